"""expmate compare: only the config keys that differ, best and last side by side, CSV, JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.cli.conftest import expmate, table


def test_differing_config_and_metrics_side_by_side(
    runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A glob of three runs: training.lr and model.width differ (epochs and run_id are not
    shown); --sort ranks by a metric's best value."""
    code, out, err = expmate(
        capsys, "compare", str(runs_dir / "lr_*"), "-m", "train/loss", "--sort", "train/loss"
    )
    assert (code, err) == (0, "")
    assert table(out) == [
        ["run", "status", "training.lr", "model.width", "train/loss ↓ best", "train/loss last"],
        ["lr_0.001", "failed", "0.001", "64", "0.051 @ 19", "0.051 @ 19"],
        ["lr_0.01", "finished", "0.01", "128", "0.06 @ 19", "0.06 @ 19"],
        ["lr_0.1", "finished", "0.1", "64", "0.15 @ 19", "0.15 @ 19"],
    ]


def test_all_metrics_by_default(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without -m every metric gets a best and a last column; a run without config shows -."""
    code, out, _ = expmate(capsys, "compare", str(runs_dir / "lr_0.1"), str(runs_dir / "killed"))
    rows = table(out)
    assert code == 0
    assert rows[0][:4] == ["run", "status", "training.lr", "training.epochs"]
    assert rows[0][-2:] == ["val/loss ↓ best", "val/loss last"]
    assert rows[2][:4] == ["killed", "killed", "-", "-"]
    assert rows[2][-2:] == ["0.8 @ 2", "0.8 @ 2"]


def test_csv_and_json(runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--csv writes the table at full precision; --json prints the same rows."""
    target = tmp_path / "cmp.csv"
    argv = ["compare", str(runs_dir / "lr_0.1"), str(runs_dir / "lr_0.01"), "-m", "val/loss"]
    code, _, _ = expmate(capsys, *argv, "--csv", str(target))
    assert code == 0
    with target.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["id"], r["training.lr"], r["model.width"]) for r in rows] == [
        ("lr_0.1", "0.1", "64"),
        ("lr_0.01", "0.01", "128"),
    ]
    assert [(r["val/loss.best"], r["val/loss.best_step"], r["val/loss.last"]) for r in rows] == [
        ("0.45", "14", "0.5"),
        ("0.45", "14", "0.5"),
    ]
    code, out, _ = expmate(capsys, *argv, "--json")
    data = json.loads(out)
    assert code == 0 and [d["id"] for d in data] == ["lr_0.1", "lr_0.01"]
    assert data[1]["model.width"] == 128 and data[1]["val/loss.last_step"] == 19


def test_bad_input(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A glob that matches nothing and an unknown metric: one line, exit 1."""
    pattern = str(runs_dir / "sweep_*")
    assert expmate(capsys, "compare", pattern) == (
        1,
        "",
        f"expmate compare: no path matches {pattern!r}\n",
    )
    code, out, err = expmate(capsys, "compare", str(runs_dir / "lr_0.1"), "-m", "val/acc")
    assert (code, out) == (1, "")
    assert err == (
        "expmate compare: no run has metric 'val/acc'; metrics: train/loss, val/accuracy, "
        "val/loss\n"
    )
