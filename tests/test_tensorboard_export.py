"""What the TensorBoard export takes from a run: hyperparameters from the config; lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from expmate.tensorboard_export import hparams_of

ROOT = Path(__file__).resolve().parents[1]


def test_hparams_of_flattens_and_converts() -> None:
    """Nested keys are dotted; numbers, booleans and strings stay; lists and null become JSON
    text; run_id and run_dir are left out."""
    config = {
        "run_id": "r1",
        "run_dir": "runs/s/r1",
        "training": {"lr": 0.001, "epochs": 3, "amp": True},
        "model": {"layers": [64, 128], "name": "mlp", "dropout": None},
    }
    assert hparams_of(config) == {
        "training.lr": 0.001,
        "training.epochs": 3,
        "training.amp": True,
        "model.layers": "[64, 128]",
        "model.name": "mlp",
        "model.dropout": "null",
    }
    assert hparams_of(None) == {}


def test_the_command_loads_no_tensorboard_torch_or_rich_until_a_command_runs() -> None:
    """Building the parser (`expmate --help`) imports none of the heavy libraries."""
    code = (
        "import sys, expmate.cli as c; c.build_parser(); "
        "print(sorted(m for m in ('tensorboard', 'torch', 'rich', 'psutil') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (0, "[]\n")
