"""expmate show: header, config, metrics, stage tree, timers, warnings, checkpoints; bad input."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pytest

from expmate import ExperimentLogger
from tests.cli.conftest import expmate, table


def _section(out: str, title: str) -> list[list[str]]:
    """The table rows printed under the line ``title`` (up to the next blank line)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return table("\n".join(lines[start + 1 : end]))


def test_failed_run(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every section of a failed run, with its exception, checked for content."""
    code, out, err = expmate(capsys, "show", str(runs_dir / "lr_0.001"))
    assert (code, err) == (0, "")
    header = table(out.split("\n\n")[0])
    assert [row[0] for row in header][:9] == [
        "run", "path", "status", "start", "end", "duration", "steps", "ranks", "command"
    ]  # fmt: skip
    assert header[0][1] == "lr_0.001"
    assert header[2][1:] == ["failed", "ValueError: NaN detected in loss"]
    assert header[6][1] == "19" and header[7][1] == f"1 (0 on {socket.gethostname()})"
    assert _section(out, "config") == [
        ["run_id", "lr_0.001"],
        ["training.lr", "0.001"],
        ["training.epochs", "4"],
        ["model.width", "64"],
    ]
    assert _section(out, "metrics") == [
        ["metric", "last", "best", "mode"],
        ["train/loss", "0.051 @ 19", "0.051 @ 19", "min"],
        ["val/loss", "0.45 @ 14", "0.45 @ 14", "min"],
        ["val/accuracy", "0.75 @ 14", "0.75 @ 14", "max"],
    ]
    stages = _section(out, "stages")
    assert stages[0] == ["stage", "count", "total", "mean"]
    assert [(r[0], r[1]) for r in stages[1:]] == [
        ("epoch (1 failed)", "4"),
        ("train", "4"),
        ("validation (1 failed)", "4"),
    ]
    assert out.count("\n  train ") == 1  # indented under epoch
    timers = _section(out, "timers (slowest 1 of 1)")
    assert timers[1][:2] == ["forward", "20"] and timers[1][-2:] == ["0", "-"]
    problems = _section(out, "warnings and errors: 1 warning, 2 errors")
    assert [(r[1], r[2], re.sub(r"after [0-9.]+s", "after Ts", r[3])) for r in problems[1:]] == [
        ("0", "WARNING", "LR might be too high"),
        ("0", "ERROR", "Stage [epoch/validation] - ERROR after Ts: ValueError: NaN detected in loss"),
        ("0", "ERROR", "Stage [epoch] - ERROR after Ts: ValueError: NaN detected in loss"),
    ]  # fmt: skip
    checkpoints = _section(out, "checkpoints (3 events)")
    assert checkpoints[0] == ["time", "rank", "level", "checkpoint", "step", "message"]
    assert [r[3:] for r in checkpoints[1:]] == [
        ["saved", str(s), f"Checkpoint saved: step {s} -> checkpoints/epoch_{e}.pt"]
        for e, s in ((0, 4), (1, 9), (2, 14))
    ]


def test_hosts_and_command_from_run_json(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With run.json, the ranks line names the hosts, and the command is shown."""
    run = tmp_path / "run"
    shutil.copytree(runs_dir / "lr_0.1", run)
    provenance = {
        "format": 1,
        "run_id": "lr_0.1",
        "command": ["train.py", "training.lr=0.1", "--name", "two words"],
        "world_size": 1,
        "ranks": [{"rank": 0, "local_rank": 0, "host": "gpu-node-7", "pid": 4242, "gpu": None}],
    }
    (run / "run.json").write_text(json.dumps(provenance))
    code, out, _ = expmate(capsys, "show", str(run), "--problems", "0")
    header = dict((row[0], row[1:]) for row in table(out.split("\n\n")[0]))
    assert code == 0
    assert header["ranks"] == ["1 (0 on gpu-node-7)"]
    assert header["command"] == ["train.py training.lr=0.1 --name 'two words'"]
    assert "LR might be too high" not in out


def test_bad_input(runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory of runs, a missing path, an empty run, a corrupt best.json: one line, exit 1."""
    assert expmate(capsys, "show", str(runs_dir)) == (
        1,
        "",
        f"expmate show: {str(runs_dir)!r} is not a run directory (no summary.json, "
        f"events.jsonl or metrics.csv); `expmate ls {runs_dir}` lists the runs under it\n",
    )
    missing = str(tmp_path / "nope")
    assert expmate(capsys, "show", missing) == (
        1,
        "",
        f"expmate show: no run directory at {missing!r}\n",
    )
    ExperimentLogger(tmp_path / "empty", console_output=False).close()
    assert expmate(capsys, "show", str(tmp_path / "empty")) == (
        1,
        "",
        "expmate show: run 'empty' is empty: no events and no metrics yet\n",
    )
    corrupt = tmp_path / "corrupt"
    shutil.copytree(runs_dir / "lr_0.1", corrupt)
    (corrupt / "best.json").write_text('{"val_loss": ')
    code, out, err = expmate(capsys, "show", str(corrupt))
    assert (code, out) == (1, "")
    assert err.startswith(f"expmate show: {str(corrupt / 'best.json')!r} is not valid JSON (")
    assert err.count("\n") == 1


def test_without_run_json_the_ranks_come_from_the_files(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run without run.json (written before it existed) shows the ranks whose files exist."""
    run = tmp_path / "run"
    shutil.copytree(runs_dir / "lr_0.1", run)
    (run / "run.json").unlink()
    code, out, _ = expmate(capsys, "show", str(run))
    header = {row[0]: row[1:] for row in table(out.split("\n\n")[0])}
    assert code == 0 and header["ranks"] == ["1 (files of ranks 0)"]
    assert "command" not in header and "git" not in header
