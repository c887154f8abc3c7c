"""summary.json: written by rank 0 at flushes (never per call), status at close, exit and
SIGTERM, heartbeat, and the reader's `killed` verdict."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from expmate import ExperimentLogger
from expmate import summary as summary_module
from expmate.summary import observed_status
from tests.ddp_launch import REPO_ROOT, worker_env


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text(), parse_constant=_no_constants)


def _no_constants(name: str) -> Any:
    raise ValueError(f"bare {name} in summary.json")


def _log(logger: ExperimentLogger) -> None:
    for step in range(3):
        logger.log_metric(step, "train", "loss", 1.0 / (step + 1))
        logger.log_metric(step, "train", "lr", 0.5)
    logger.log_metrics(2, "val", {"loss": 0.25, "accuracy": 0.75})


def test_flush_writes_running_summary_with_last_and_best(tmp_path: Path) -> None:
    """After flush() the file holds status running, no end, and last/best of every metric."""
    logger = ExperimentLogger(tmp_path, run_id="exp", console_output=False, flush_interval=1000)
    before = time.time()
    _log(logger)
    logger.log_metric(3, "train", "loss", float("nan"))
    logger.flush()
    data = _summary(tmp_path)
    logger.close()
    assert before - 1 < data.pop("start_time") <= data.pop("heartbeat") <= time.time()
    assert data == {
        "format": 1,
        "run_id": "exp",
        "status": "running",
        "end_time": None,
        "flush_interval": 1000.0,
        "world_size": 1,
        "last_step": 3,
        "metrics": {
            "train/loss": {
                "split": "train",
                "name": "loss",
                "last": "NaN",
                "last_step": 3,
                "best": 1 / 3,
                "best_step": 2,
                "mode": "min",
            },
            "train/lr": {
                "split": "train",
                "name": "lr",
                "last": 0.5,
                "last_step": 2,
                "best": None,
                "best_step": None,
                "mode": None,
            },
            "val/loss": {
                "split": "val",
                "name": "loss",
                "last": 0.25,
                "last_step": 2,
                "best": 0.25,
                "best_step": 2,
                "mode": "min",
            },
            "val/accuracy": {
                "split": "val",
                "name": "accuracy",
                "last": 0.75,
                "last_step": 2,
                "best": 0.75,
                "best_step": 2,
                "mode": "max",
            },
        },
    }


def test_close_records_finished_with_end_time(tmp_path: Path) -> None:
    """close() writes status finished and an end time equal to the last heartbeat."""
    logger = ExperimentLogger(tmp_path, console_output=False)
    _log(logger)
    logger.close()
    data = _summary(tmp_path)
    assert data["status"] == "finished"
    assert data["end_time"] == data["heartbeat"] >= data["start_time"]
    assert "exception" not in data


def test_a_flush_after_close_keeps_the_recorded_end(tmp_path: Path) -> None:
    """The background flusher may still hold a logger that closed meanwhile: its late flush
    must not turn the recorded end back into running."""
    logger = ExperimentLogger(tmp_path, console_output=False)
    _log(logger)
    logger.close()
    logger.flush_files(time.time())  # what the flusher thread does with its list of loggers
    assert _summary(tmp_path)["status"] == "finished"


def test_with_block_left_by_exception_is_failed(tmp_path: Path) -> None:
    """A `with` block left by an exception records failed with its type and message."""
    with pytest.raises(ValueError), ExperimentLogger(tmp_path, console_output=False) as logger:
        _log(logger)
        raise ValueError("lr too high")
    data = _summary(tmp_path)
    assert (data["status"], data["exception"], data["message"]) == (
        "failed",
        "ValueError",
        "lr too high",
    )


def test_with_block_left_by_ctrl_c_is_interrupted(tmp_path: Path) -> None:
    """KeyboardInterrupt in a `with` block records interrupted by SIGINT."""
    with pytest.raises(KeyboardInterrupt), ExperimentLogger(tmp_path, console_output=False):
        raise KeyboardInterrupt
    data = _summary(tmp_path)
    assert (data["status"], data["signal"]) == ("interrupted", "SIGINT")


def test_rank_one_writes_no_summary(tmp_path: Path) -> None:
    """Only rank 0 writes summary.json."""
    logger = ExperimentLogger(tmp_path, rank=1, console_output=False)
    logger.log_metric(0, "val", "loss", 1.0)
    logger.close()
    assert not (tmp_path / "summary.json").exists()


def test_log_metric_never_builds_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls cost nothing for the summary; forced flushes of a tight loop rewrite it at most
    once per flush interval, a flush() and close() each once."""
    writes: list[float] = []
    original = summary_module.SummaryFile.write

    def counted(self: Any, entries: Any, now: float, end: Any) -> None:
        writes.append(now)
        original(self, entries, now, end)

    monkeypatch.setattr(summary_module.SummaryFile, "write", counted)
    logger = ExperimentLogger(tmp_path, console_output=False, flush_interval=1000)
    for step in range(200):
        logger.log_metric(step, "train", "loss", 1.0)
    assert writes == []
    for step in range(200, 20_200):  # about ten flushes forced by the buffer
        logger.log_metric(step, "train", "loss", 1.0)
    assert len(writes) == 1  # the first forced flush; the next ones are within the interval
    logger.flush()
    logger.close()
    assert len(writes) == 3
    assert _summary(tmp_path)["metrics"]["train/loss"]["last_step"] == 20_199


def test_background_flusher_keeps_the_heartbeat_fresh(tmp_path: Path) -> None:
    """With no calls at all, the heartbeat advances every flush interval."""
    logger = ExperimentLogger(tmp_path, console_output=False, flush_interval=0.05)
    logger.info("started")
    deadline = time.time() + 30
    first = None
    while time.time() < deadline:
        if (tmp_path / "summary.json").exists():
            beat = _summary(tmp_path)["heartbeat"]
            first = beat if first is None else first
            if beat > first:
                break
        time.sleep(0.02)
    logger.close()
    assert first is not None and _summary(tmp_path)["heartbeat"] > first


def test_reopened_run_keeps_start_and_earlier_metrics(tmp_path: Path) -> None:
    """A second logger on the same directory keeps the first start time and metrics it has not
    logged again."""
    first = ExperimentLogger(tmp_path, console_output=False)
    first.log_metric(0, "val", "loss", 0.5)
    first.log_metric(0, "val", "accuracy", 0.5)
    first.close()
    start = _summary(tmp_path)["start_time"]
    second = ExperimentLogger(tmp_path, console_output=False)
    second.log_metric(1, "val", "loss", 0.25)
    second.close()
    data = _summary(tmp_path)
    assert data["start_time"] == start
    assert data["metrics"]["val/accuracy"]["last"] == 0.5
    assert (data["metrics"]["val/loss"]["last"], data["last_step"]) == (0.25, 1)


def _script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys, time\nfrom expmate import ExperimentLogger\n"
        f"logger = ExperimentLogger({str(tmp_path)!r}, console_output=False)\n"
        "logger.log_metric(0, 'val', 'loss', 0.5)\n" + body
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env=worker_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_logger_never_closed_is_finished_at_exit(tmp_path: Path) -> None:
    """At interpreter exit a logger never closed records finished."""
    assert _script(tmp_path, "").returncode == 0
    data = _summary(tmp_path)
    assert (data["status"], data["end_time"] is not None) == ("finished", True)


def test_script_dying_of_an_exception_is_failed_at_exit(tmp_path: Path) -> None:
    """An exception that ends the script is recorded at exit (at_exit=True)."""
    result = _script(tmp_path, "raise RuntimeError('out of memory')\n")
    assert result.returncode == 1
    data = _summary(tmp_path)
    assert (data["status"], data["exception"], data["message"]) == (
        "failed",
        "RuntimeError",
        "out of memory",
    )


def test_sigterm_is_interrupted(tmp_path: Path) -> None:
    """A SIGTERM records interrupted with the signal's name before the process dies."""
    code = (
        "import time\nfrom expmate import ExperimentLogger\n"
        f"logger = ExperimentLogger({str(tmp_path)!r}, console_output=False)\n"
        "logger.log_metric(0, 'val', 'loss', 0.5)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=worker_env(), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM
    data = _summary(tmp_path)
    assert (data["status"], data["signal"]) == ("interrupted", "SIGTERM")
    assert data["metrics"]["val/loss"]["last"] == 0.5


@pytest.mark.parametrize(
    ("status", "age", "interval", "seen"),
    [
        ("running", 9.0, 1.0, "running"),  # younger than the 10 s minimum
        ("running", 11.0, 1.0, "killed"),
        ("running", 40.0, 10.0, "running"),  # 4 intervals
        ("running", 51.0, 10.0, "killed"),  # over 5 intervals
        ("finished", 1e6, 1.0, "finished"),
        ("failed", 1e6, 1.0, "failed"),
    ],
)
def test_observed_status(status: str, age: float, interval: float, seen: str) -> None:
    """running with a heartbeat older than 5 flush intervals (and 10 s) reads as killed."""
    record = {"status": status, "heartbeat": 1000.0, "flush_interval": interval}
    assert observed_status(record, 1000.0 + age) == seen
