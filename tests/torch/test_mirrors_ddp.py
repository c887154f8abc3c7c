"""Mirrors under real torchrun (2 CPU ranks, gloo): only rank 0 forwards, and the reduced values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ddp_launch import torchrun
from tests.mirrors.conftest import csv_series
from tests.mirrors.readers import tensorboard_scalars

WORKERS = Path(__file__).parent / "workers"

pytestmark = pytest.mark.ddp


def test_rank_zero_forwards_the_reduced_rows(tmp_path: Path) -> None:
    """Rank 0's mirrors get exactly metrics.csv (global means and maxima); rank 1 starts none."""
    pytest.importorskip("tensorboard")
    launch = torchrun(WORKERS / "mirror_worker.py", str(tmp_path), timeout=120)
    assert launch.returncode == 0, launch.output
    assert not (tmp_path / "mirror_rank1.json").exists()
    received = json.loads((tmp_path / "mirror_rank0.json").read_text())
    expected = [
        *[[s, "train", "loss", 2.0 + s] for s in range(3)],
        *[[s, "val", "accuracy", 0.5] for s in range(3)],
    ]
    assert sorted(received["rows"]) == sorted([*expected, [3, "train", "local_time", 0.1]])
    assert received["best"] == {
        "train_loss": {"value": 2.0, "step": 0, "mode": "min"},
        "val_accuracy": {"value": 0.5, "step": 0, "mode": "max"},
    }
    assert len(list((tmp_path / "tensorboard").iterdir())) == 1  # one event file: rank 0's
    scalars, _ = tensorboard_scalars(tmp_path / "tensorboard")
    assert {k: v for k, v in scalars.items() if not k.startswith("best/")} == csv_series(tmp_path)
    assert scalars["train/loss"] == [(0, 2.0), (1, 3.0), (2, 4.0)]
    assert scalars["train/local_time"] == [(3, 0.1)]  # rank 0's own; rank 1's is not mirrored
