"""Forwarding to mirrors: what a mirror receives, and what a broken or slow one costs (nothing)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import expmate
from expmate import ExperimentLogger
from expmate.mirrors import MetricRow, Mirror, RunInfo, build_mirrors
from tests.helpers import read_csv, read_events

ROOT = Path(__file__).resolve().parents[2]


class Recorder(Mirror):
    """Keeps every call it gets."""

    name = "recorder"
    interval = 0.05

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.batch_seen = threading.Event()

    def start(self, run: RunInfo) -> None:
        self.calls.append(("start", run))

    def log_metrics(self, rows: list[MetricRow]) -> None:
        self.calls.append(("rows", rows))
        self.batch_seen.set()

    def log_best(self, best: dict[str, dict[str, Any]]) -> None:
        self.calls.append(("best", best))

    def finish(self, outcome: dict[str, Any]) -> None:
        self.calls.append(("finish", outcome))

    def rows(self) -> list[MetricRow]:
        return [row for kind, batch in self.calls if kind == "rows" for row in batch]


class FailsAtStart(Recorder):
    name = "fails-at-start"

    def start(self, run: RunInfo) -> None:
        raise RuntimeError("no server")


class FailsOnSecondBatch(Recorder):
    name = "fails-later"

    def log_metrics(self, rows: list[MetricRow]) -> None:
        if self.batch_seen.is_set():
            raise ConnectionError("connection reset")
        super().log_metrics(rows)


class Stuck(Recorder):
    """Blocks in its first log_metrics until released (at most 10 s)."""

    name = "stuck"
    queue_size = 1000
    drain_timeout = 0.5

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def log_metrics(self, rows: list[MetricRow]) -> None:
        self.entered.set()
        self.release.wait(10)
        super().log_metrics(rows)


def csv_rows(run_dir: Path) -> list[tuple[int, str, str, float, str]]:
    """metrics.csv as (step, split, name, value, wall time text)."""
    return [
        (int(s), split, name, float(v), wall)
        for s, split, name, v, wall in read_csv(run_dir / "metrics.csv")[1:]
    ]


def as_csv(rows: list[MetricRow]) -> list[tuple[int, str, str, float, str]]:
    """Mirrored rows in the form of :func:`csv_rows` (wall time as metrics.csv prints it)."""
    return [(r.step, r.split, r.name, float(r.value), f"{r.wall_time:.3f}") for r in rows]


def log_losses(logger: ExperimentLogger, steps: range) -> None:
    """``train/loss = 1 / (step + 1)`` at each of ``steps``."""
    for step in steps:
        logger.log_metric(step, "train", "loss", 1.0 / (step + 1))


def warnings_of(run_dir: Path) -> list[str]:
    return [e["message"] for e in read_events(run_dir / "events.jsonl") if e["level"] == "WARNING"]


def test_rows_config_best_and_end_reach_the_mirror(tmp_path: Path) -> None:
    """A mirror gets start (run dir, id, config), exactly metrics.csv's rows in batches of at
    most its batch_size, best.json, the end."""
    expmate.parse_config(["+training.lr=0.001"], defaults={"run_id": "r1", "seed": 7})
    recorder = Recorder()
    recorder.batch_size = 3
    logger = ExperimentLogger(run_dir=tmp_path, console_output=False, mirror=recorder)
    for step in range(3):
        logger.log_metric(step, "train", "loss", 1.0 / (step + 1))
        logger.log_metric(step, "val", "accuracy", [0.5, 0.75, 0.625][step])
    logger.log_metric(3, "train", "lr", 3)
    logger.close()
    assert recorder.calls[0] == (
        "start",
        RunInfo(tmp_path, tmp_path.name, {"run_id": "r1", "seed": 7, "training": {"lr": 0.001}}),
    )
    assert as_csv(recorder.rows()) == csv_rows(tmp_path)
    assert len(recorder.rows()) == 7
    assert max(len(batch) for kind, batch in recorder.calls if kind == "rows") <= 3
    assert recorder.calls[-2:] == [
        ("best", json.loads((tmp_path / "best.json").read_text(encoding="utf-8"))),
        ("finish", {"status": "finished"}),
    ]
    assert warnings_of(tmp_path) == []


def test_an_exception_in_the_with_block_is_the_mirrors_outcome(tmp_path: Path) -> None:
    """Leaving the logger's with-block by an exception finishes the mirror as failed."""
    recorder = Recorder()
    with (
        pytest.raises(ValueError, match="diverged"),
        ExperimentLogger(run_dir=tmp_path, console_output=False, mirror=[recorder]) as logger,
    ):
        logger.log_metric(0, "train", "loss", 0.5)
        raise ValueError("diverged")
    assert recorder.calls[-1] == (
        "finish",
        {"status": "failed", "exception": "ValueError", "message": "diverged"},
    )
    assert [r.value for r in recorder.rows()] == [0.5]


def test_ranks_other_than_zero_start_no_mirror(tmp_path: Path) -> None:
    """On rank 1 the mirror is validated but never started and gets nothing."""
    recorder = Recorder()
    logger = ExperimentLogger(run_dir=tmp_path, rank=1, console_output=False, mirror=[recorder])
    logger.log_metric(0, "train", "loss", 0.5, reduce=None)
    logger.close()
    assert recorder.calls == []
    assert [t.name for t in threading.enumerate() if t.name.startswith("expmate-mirror")] == []
    assert read_csv(tmp_path / "metrics_rank1.csv")[1][:4] == ["0", "train", "loss", "0.5"]


def test_unknown_mirror_name_lists_the_known_ones(tmp_path: Path) -> None:
    """An unknown name raises ValueError naming it and the known ones; nothing is written."""
    message = (
        "unknown mirror 'tensorbord'; known mirrors: 'mlflow', 'tensorboard', 'wandb' "
        "(or a Mirror instance)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ExperimentLogger(run_dir=tmp_path / "run", mirror=["tensorbord"])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (42, TypeError, "mirror must be a name, a Mirror or a list of them, not int"),
        ([Recorder, "wandb"], TypeError, "a mirror is a name or a Mirror instance, not <class "),
        (["tensorboard", "TensorBoard"], ValueError, "mirror 'TensorBoard' is given twice"),
    ],
)
def test_bad_mirror_specs_are_refused(spec: Any, error: type, message: str) -> None:
    """Not a name or Mirror, or the same tracker twice: TypeError/ValueError naming it."""
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        build_mirrors(spec)


@pytest.mark.parametrize("name", ["tensorboard", "wandb", "mlflow"])
def test_missing_tracker_names_the_pip_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A tracker that is not installed: ModuleNotFoundError with the pip install; nothing written."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module, *a: None if module == name else real(module, *a)
    )
    message = f'mirror {name!r} needs {name}, which is not installed: pip install "expmate[{name}]"'
    with pytest.raises(ModuleNotFoundError, match=f"^{re.escape(message)}$"):
        ExperimentLogger(run_dir=tmp_path / "run", mirror=name)
    assert not (tmp_path / "run").exists()


def test_mirror_failing_at_start_costs_the_run_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tracker raising at start: one stderr warning, all of the run's files, losses counted."""
    mirror = FailsAtStart()
    logger = ExperimentLogger(run_dir=tmp_path, console_output=False, mirror=mirror)
    log_losses(logger, range(100))
    logger.close()
    assert len(read_csv(tmp_path / "metrics.csv")) == 101
    assert capsys.readouterr().err == (
        f"expmate: starting mirror 'fails-at-start' for {tmp_path} failed (RuntimeError: no "
        "server); training continues, further failures of it are not reported\n"
    )
    assert warnings_of(tmp_path) == [
        "Mirror 'fails-at-start' forwarded 0 of 100 metric values (100 not forwarded): it raised "
        "RuntimeError while starting: no server"
    ]
    assert mirror.calls == []


def test_mirror_failing_mid_run_keeps_what_it_took(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tracker raising on its second batch: one warning; the first batch counted as forwarded."""
    mirror = FailsOnSecondBatch()
    logger = ExperimentLogger(run_dir=tmp_path, console_output=False, mirror=mirror)
    log_losses(logger, range(10))
    assert mirror.batch_seen.wait(30)
    log_losses(logger, range(10, 25))
    logger.close()
    assert [r.step for r in mirror.rows()] == list(range(10))
    assert capsys.readouterr().err == (
        f"expmate: forwarding metrics to mirror 'fails-later' for {tmp_path} failed "
        "(ConnectionError: connection reset); training continues, further failures of it are "
        "not reported\n"
    )
    events = [e for e in read_events(tmp_path / "events.jsonl") if e["level"] == "WARNING"]
    assert [(e["message"], e["forwarded"], e["not_forwarded"]) for e in events] == [
        (
            "Mirror 'fails-later' forwarded 10 of 25 metric values (15 not forwarded): it raised "
            "ConnectionError while forwarding metrics: connection reset",
            10,
            15,
        )
    ]
    assert ("finish", {"status": "finished"}) not in mirror.calls
    assert len(read_csv(tmp_path / "metrics.csv")) == 26


def test_blocked_mirror_never_blocks_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tracker blocked for 10 s: the loop and close() end long before; drops are counted; a
    healthy mirror beside it gets every row."""
    mirror, healthy = Stuck(), Recorder()
    healthy.queue_size = 30_000
    logger = ExperimentLogger(run_dir=tmp_path, console_output=False, mirror=[mirror, healthy])
    try:
        logger.log_metric(0, "train", "loss", 1.0)
        assert mirror.entered.wait(30)  # the mirror's thread is now inside the blocking call
        began = time.monotonic()
        for step in range(1, 20_001):
            logger.log_metric(step, "train", "loss", 1.0 / step)
        loop_seconds = time.monotonic() - began
        logger.close()
        closed_after = time.monotonic() - began
    finally:
        mirror.release.set()
    assert loop_seconds < 5.0  # the block lasts 10 s
    assert closed_after < 5.0  # close waits the mirror's drain_timeout (0.5 s), not the block
    assert len(read_csv(tmp_path / "metrics.csv")) == 20_002
    assert as_csv(healthy.rows()) == csv_rows(tmp_path)
    assert healthy.calls[-1] == ("finish", {"status": "finished"})
    assert capsys.readouterr().err == (
        f"expmate: forwarding metrics to mirror 'stuck' for {tmp_path} failed (MirrorBacklog: "
        "1000 rows are waiting for it; newer rows are dropped and counted until it catches up); "
        "training continues, further failures of it are not reported\n"
    )
    assert warnings_of(tmp_path) == [
        "Mirror 'stuck' forwarded 0 of 20001 metric values (20001 not forwarded): its queue of "
        "1000 rows was full; it was not done 0.5 s after close"
    ]


class FailsAtFinish(Recorder):
    name = "fails-at-finish"

    def finish(self, outcome: dict[str, Any]) -> None:
        raise OSError("disk full")


def test_mirror_failing_at_finish_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tracker raising in finish: every value forwarded, one warning, and the close WARNING."""
    mirror = FailsAtFinish()
    logger = ExperimentLogger(run_dir=tmp_path, console_output=False, mirror=mirror)
    logger.log_metric(0, "val", "loss", 0.5)
    logger.close()
    assert capsys.readouterr().err == (
        f"expmate: finishing mirror 'fails-at-finish' for {tmp_path} failed (OSError: disk full); "
        "training continues, further failures of it are not reported\n"
    )
    assert warnings_of(tmp_path) == [
        "Mirror 'fails-at-finish' forwarded 1 of 1 metric values (0 not forwarded): it raised "
        "OSError while finishing: disk full"
    ]
    assert mirror.calls[-1] == ("best", {"val_loss": {"value": 0.5, "step": 0, "mode": "min"}})


EXIT_SCRIPT = """
import json, os, sys
from expmate import ExperimentLogger
from expmate.mirrors import Mirror

class FileMirror(Mirror):
    name = "file"
    def __init__(self, path):
        self.path, self.rows = path, []
    def log_metrics(self, rows):
        self.rows += [[r.step, r.value] for r in rows]
    def finish(self, outcome):
        with open(self.path, "w") as out:
            json.dump({"rows": self.rows, "outcome": outcome}, out)

run_dir = sys.argv[1]
logger = ExperimentLogger(run_dir=run_dir, console_output=False, mirror=FileMirror(run_dir + "/mirror.json"))
logger.log_metric(0, "train", "loss", 0.5)
pid = os.fork()
if pid == 0:
    logger.log_metric(1, "train", "loss", 9.0)
    logger.close()
    os._exit(0)
os.waitpid(pid, 0)
logger.log_metric(2, "train", "loss", 0.25)
"""


def test_fork_and_exit_without_close(tmp_path: Path) -> None:
    """A forked child forwards nothing; a logger never closed still finishes its mirror at exit."""
    result = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(tmp_path)],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads((tmp_path / "mirror.json").read_text(encoding="utf-8")) == {
        "rows": [[0, 0.5], [2, 0.25]],
        "outcome": {"status": "finished"},
    }
