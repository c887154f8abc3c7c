"""expmate.attempts: one writer per run directory and rank, and the restart history it keeps."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from expmate import ExperimentLogger, RunDirInUseError, attempts
from expmate.attempts import host_name
from expmate.sinks import base
from tests.helpers import read_events, start_worker

WORKER = Path(__file__).resolve().parent / "crash_workers" / "attempt_worker.py"
FILES0 = "exp.log, events.jsonl, metrics.csv, best.json"


def _worker(mode: str, run_dir: Path) -> subprocess.Popen[str]:
    return start_worker(WORKER, mode, str(run_dir))


def _finished(mode: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    proc = _worker(mode, run_dir)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _records(run_dir: Path, name: str = "attempts.jsonl") -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def _since(record: dict[str, Any]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["time"]))


def test_second_logger_in_the_same_process_is_refused(tmp_path: Path) -> None:
    """A logger still open holds rank 0's files: another on them raises, naming this process,
    and writes nothing to them."""
    first = ExperimentLogger(tmp_path, console_output=False, capture_git=False)
    first.info("first")
    first.flush()
    mine = ("attempts.jsonl", "events.jsonl", "exp.log")
    before = {name: (tmp_path / name).read_bytes() for name in mine}
    with pytest.raises(RunDirInUseError) as caught:
        ExperimentLogger(tmp_path, console_output=False)
    (start,) = _records(tmp_path)
    assert str(caught.value) == (
        f"run_dir {str(tmp_path)!r} is in use: rank 0's files ({FILES0}) are being written by "
        f"another ExperimentLogger of this process (pid {os.getpid()} on host {host_name()}, "
        f"open since {_since(start)}). Only one logger may write them: close() that logger "
        "first, or use another run_dir"
    )
    assert {name: (tmp_path / name).read_bytes() for name in mine} == before
    first.close()
    second = ExperimentLogger(tmp_path, console_output=False)  # released by close()
    second.close()


def test_other_ranks_have_locks_of_their_own(tmp_path: Path) -> None:
    """Rank 0 and rank 1 loggers on one directory do not exclude each other; two rank 1 do."""
    zero = ExperimentLogger(tmp_path, rank=0, console_output=False)
    one = ExperimentLogger(tmp_path, rank=1, console_output=False)
    with pytest.raises(RunDirInUseError, match=r"rank 1's files \(exp_rank1.log, "):
        ExperimentLogger(tmp_path, rank=1, console_output=False)
    one.close()
    zero.close()
    assert [r["event"] for r in _records(tmp_path, "attempts_rank1.jsonl")] == ["start", "end"]


def test_another_process_is_named_and_its_kill_frees_the_directory(tmp_path: Path) -> None:
    """A logger of another process holds the files until that process dies: even SIGKILL
    releases the kernel lock, and the next attempt records that the previous one was killed."""
    holder = _worker("hold", tmp_path)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        with pytest.raises(RunDirInUseError) as caught:
            ExperimentLogger(tmp_path, console_output=False)
        (start,) = _records(tmp_path)
        assert str(caught.value) == (
            f"run_dir {str(tmp_path)!r} is in use: rank 0's files ({FILES0}) are being written "
            f"by process {holder.pid} on host {host_name()} (since {_since(start)}). Only one "
            "logger may write them: wait for that process to end (or stop it), or use another "
            "run_dir"
        )
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.communicate()
    logger = ExperimentLogger(tmp_path, console_output=False)
    logger.close()
    _, second, end = _records(tmp_path)
    assert second["previous"] == {"attempt": 0, "status": "killed"}
    assert (second["attempt"], end["status"]) == (1, "finished")


def test_start_and_end_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each start says attempt, restart count, host, pid, rank, world size and how the previous
    attempt ended; the end says how this one did."""
    with ExperimentLogger(tmp_path, console_output=False):
        pass
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    with (
        pytest.raises(ValueError, match="diverged"),
        ExperimentLogger(tmp_path, console_output=False),
    ):
        raise ValueError("diverged")
    records = _records(tmp_path)
    times = [r.pop("time") for r in records]
    assert times == sorted(times)
    me = {"host": host_name(), "pid": os.getpid(), "rank": 0, "world_size": 1}
    assert records == [
        {"event": "start", "attempt": 0, "restart_count": 0, **me, "previous": None},
        {"event": "end", "attempt": 0, "status": "finished"},
        {
            "event": "start",
            "attempt": 1,
            "restart_count": 2,
            **me,
            "previous": {"attempt": 0, "status": "finished"},
        },
        {
            "event": "end",
            "attempt": 1,
            "status": "failed",
            "exception": "ValueError",
            "message": "diverged",
        },
    ]


def test_close_while_handling_an_exception_records_it(tmp_path: Path) -> None:
    """close() inside an except block records the exception being handled (Ctrl-C here)."""
    logger = ExperimentLogger(tmp_path, console_output=False)
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        logger.close()
    assert _records(tmp_path)[-1]["status"] == "interrupted"
    assert _records(tmp_path)[-1]["signal"] == "SIGINT"


@pytest.mark.parametrize(
    ("mode", "returncode", "end"),
    [
        ("exit", 0, {"status": "finished"}),
        ("raise", 1, {"status": "failed", "exception": "ValueError", "message": "bad lr"}),
        ("sigterm", -signal.SIGTERM, {"status": "interrupted", "signal": "SIGTERM"}),
    ],
)
def test_end_is_recorded_at_exit_and_on_sigterm(
    tmp_path: Path, mode: str, returncode: int, end: dict[str, str]
) -> None:
    """A logger never closed records its end at exit: how the script ended, or the SIGTERM it
    died of (the default action of the signal is kept)."""
    result = _finished(mode, tmp_path)
    assert result.returncode == returncode, result.stderr
    _, last = _records(tmp_path)
    assert {k: v for k, v in last.items() if k not in ("event", "attempt", "time")} == end
    assert [e["message"] for e in read_events(tmp_path / "events.jsonl")] == [mode]


def test_sigterm_while_the_process_exits_lets_the_exit_finish(tmp_path: Path) -> None:
    """A SIGTERM that lands in the exit-time flush (torchrun stopping a worker that is already
    ending) neither cuts that flush short nor the records of how the run ended."""
    proc = _worker("slow-exit", tmp_path)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "exiting\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [e["message"] for e in read_events(tmp_path / "events.jsonl")] == ["before exit"]
    assert _records(tmp_path)[-1]["status"] == "finished"


def test_forked_child_neither_holds_the_lock_nor_ends_the_attempt(tmp_path: Path) -> None:
    """A forked child that outlives its parent's logger keeps no lock (a new logger opens) and
    writes no end record when it exits normally."""
    result = _finished("fork", tmp_path)
    assert (result.returncode, result.stdout) == (0, "child exit 0\n"), result.stderr
    assert [(r["event"], r["attempt"]) for r in _records(tmp_path)] == [
        ("start", 0),
        ("end", 0),
        ("start", 1),
        ("end", 1),
    ]


def test_a_filesystem_without_locks_is_reported_once_and_logging_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """flock failing with ENOLCK (some network filesystems) is one stderr line, not an error."""
    monkeypatch.setattr(base, "_reported", set())

    class NoLocks:
        LOCK_EX, LOCK_NB, LOCK_UN = 2, 4, 8

        @staticmethod
        def flock(fd: int, op: int) -> None:
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(attempts, "fcntl", NoLocks)
    with ExperimentLogger(tmp_path, console_output=False) as logger:
        logger.info("still logged")
    path = tmp_path / "attempts.jsonl"
    assert capfd.readouterr().err == (
        f"expmate: locking {path} (another logger is not kept out) failed (OSError: "
        f"[Errno {errno.ENOLCK}] {os.strerror(errno.ENOLCK)}); training continues, further "
        "failures of it are not reported\n"
    )
    assert [e["message"] for e in read_events(tmp_path / "events.jsonl")] == ["still logged"]
