"""expmate ls: one line per run from summary.json, sorting, filters, fallbacks, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import expmate, table

HEADER = [
    "run",
    "status",
    "start",
    "duration",
    "steps",
    "train/loss ↓",
    "val/accuracy ↑",
    "val/loss ↓",
]


def test_lists_every_run_newest_first(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Id, status (killed for a dead heartbeat), steps and best values, newest run first (the
    killed run started a minute before the others)."""
    code, out, err = expmate(capsys, "ls", str(runs_dir))
    assert (code, err) == (0, "")
    rows = table(out)
    assert rows[0] == HEADER
    assert [(r[0], r[1], r[4], *r[5:]) for r in rows[1:]] == [
        ("lr_0.001", "failed", "19", "0.051 @ 19", "0.75 @ 14", "0.45 @ 14"),
        ("lr_0.01", "finished", "19", "0.06 @ 19", "0.75 @ 14", "0.45 @ 14"),
        ("lr_0.1", "finished", "19", "0.15 @ 19", "0.75 @ 14", "0.45 @ 14"),
        ("killed", "killed", "2", "-", "-", "0.8 @ 2"),
    ]


def test_sort_filter_limit(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--sort ranks by a metric's best in its direction; --filter keeps matching config values
    (0.01 == 1e-2) or statuses; --limit keeps the first N."""
    code, out, _ = expmate(capsys, "ls", str(runs_dir), "--sort", "train/loss", "--limit", "2")
    assert code == 0 and [r[0] for r in table(out)[1:]] == ["lr_0.001", "lr_0.01"]
    code, out, _ = expmate(capsys, "ls", str(runs_dir), "--filter", "training.lr=1e-2")
    assert code == 0 and [r[0] for r in table(out)[1:]] == ["lr_0.01"]
    code, out, _ = expmate(
        capsys, "ls", str(runs_dir), "--filter", "status=finished", "--filter", "model.width=64"
    )
    assert code == 0 and [r[0] for r in table(out)[1:]] == ["lr_0.1"]
    code, out, _ = expmate(capsys, "ls", str(runs_dir), "-m", "val/loss", "--sort", "id")
    assert table(out)[0] == ["run", "status", "start", "duration", "steps", "val/loss ↓"]
    assert [r[0] for r in table(out)[1:]] == ["killed", "lr_0.001", "lr_0.01", "lr_0.1"]


def test_json_output(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the same records, full precision."""
    code, out, _ = expmate(capsys, "ls", str(runs_dir), "--json", "--filter", "id=lr_0.1")
    (record,) = json.loads(out)
    assert code == 0
    assert (record["id"], record["status"], record["last_step"]) == ("lr_0.1", "finished", 19)
    assert record["metrics"]["train/loss"]["best"] == 1 / 20 + 0.1


def test_runs_without_summary_and_corrupt_ones(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run written before summary.json existed is listed from its files (status unknown); a
    corrupt summary.json skips that run with one line, and the exit status is 1."""
    old = tmp_path / "runs" / "old"
    shutil.copytree(runs_dir / "lr_0.1", old)
    (old / "summary.json").unlink()
    broken = tmp_path / "runs" / "broken"
    shutil.copytree(runs_dir / "lr_0.01", broken)
    (broken / "summary.json").write_text('{"format": 1, "status": ')
    code, out, err = expmate(capsys, "ls", str(tmp_path / "runs"))
    assert code == 1
    assert [(r[0], r[1], r[4], r[7]) for r in table(out)[1:]] == [
        ("lr_0.1", "unknown", "19", "0.45 @ 14")
    ]
    assert err.startswith(f"expmate ls: skipped {str(broken)!r}: ")
    assert "summary.json' is not valid JSON" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["ls", "{root}/nowhere"], 1, "expmate ls: no run directory at '{root}/nowhere'\n"),
        (["ls", "{root}/lr_9*"], 1, "expmate ls: no path matches '{root}/lr_9*'\n"),
        (
            ["ls", "{root}", "--filter", "training.lr"],
            2,
            "expmate ls: --filter takes KEY=VALUE (training.lr=0.01), not 'training.lr'\n",
        ),
        (
            ["ls", "{root}", "--filter", "training.lr=5"],
            1,
            "expmate ls: no run matches --filter training.lr=5\n",
        ),
        (
            ["ls", "{root}", "--sort", "val/los"],
            1,
            "expmate ls: no run has a best value of 'val/los'; metrics with a best value: "
            "train/loss, val/accuracy, val/loss\n",
        ),
        (
            ["ls", "{root}", "--sort", "loss"],
            2,
            "expmate ls: a metric here is SPLIT/NAME (val/loss), not 'loss'\n",
        ),
    ],
)
def test_bad_input_is_one_line(
    runs_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    """Missing directories, empty globs, bad filters and unknown metrics: one line, 1 or 2."""
    got = expmate(capsys, *(a.format(root=runs_dir) for a in argv))
    assert got == (code, "", message.format(root=runs_dir))


def test_limit_must_be_positive(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--limit 0 is a usage error from argparse (exit 2), no traceback."""
    code, _, err = expmate(capsys, "ls", str(runs_dir), "--limit", "0")
    assert code == 2 and "must be a positive integer, not '0'" in err
