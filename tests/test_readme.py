"""The README's first example, copied out of README.md and run as it is in an empty directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.ddp_launch import worker_env
from tests.helpers import lines_of, read_csv

ROOT = Path(__file__).resolve().parents[1]


def _first_python_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match is not None, "README.md has no python example"
    return match.group(1)


def _run_example(tmp_path: Path, *args: str) -> Path:
    """Run the example as train.py in ``tmp_path``; return the one run directory it made."""
    (tmp_path / "train.py").write_text(_first_python_block(), encoding="utf-8")
    before = set((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() else set()
    result = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=tmp_path,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stderr) == (0, "")
    (run_dir,) = set((tmp_path / "runs").glob("*")) - before
    return run_dir


def _messages(run_dir: Path) -> list[str]:
    return [line.split(" - ", 2)[2] for line in lines_of(run_dir / "exp.log")]


def test_readme_example_runs_without_arguments(tmp_path: Path) -> None:
    """`python train.py` on a fresh directory: 3 epochs from the defaults, the best line logged."""
    run_dir = _run_example(tmp_path)
    rows = read_csv(run_dir / "metrics.csv")
    assert [row[:3] for row in rows[1:]] == [
        [str(epoch), split, name]
        for epoch in range(3)
        for split, name in (("train", "loss"), ("val", "loss"), ("val", "accuracy"))
    ]
    messages = _messages(run_dir)
    assert messages[0] == f"Starting experiment: {run_dir.name}"
    assert messages[-1] == "Best validation loss: 0.3000 at epoch 2"


def test_readme_example_takes_the_override_in_its_comment(tmp_path: Path) -> None:
    """`python train.py training.epochs=5`, as the example's comment says, runs 5 epochs."""
    run_dir = _run_example(tmp_path, "training.epochs=5")
    assert sorted({row[0] for row in read_csv(run_dir / "metrics.csv")[1:]}) == list("01234")
    assert _messages(run_dir)[-1] == "Best validation loss: 0.1800 at epoch 4"
    assert "epochs: 5" in (run_dir / "config.yaml").read_text(encoding="utf-8")
