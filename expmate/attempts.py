"""One writer per run directory and rank, and the restart history that writer keeps.

A logger takes an exclusive ``flock`` on its rank's restart history file (``attempts.jsonl``,
``attempts_rank{r}.jsonl``) before it opens any other file of that rank. The kernel releases
the lock when the process dies, however it dies, so a killed run never leaves a stale lock; a
second logger on the same files, in this process or another, gets :class:`RunDirInUseError`
naming the directory and the holder. Then the logger appends its ``start`` record (attempt,
torchrun's restart count, host, pid, how the previous attempt ended), later ``resume`` markers,
and an ``end`` record when it closes or the process exits. The formats are in
``docs/file-formats.md``; :mod:`expmate.history` reads them back.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from expmate import flushing, run_end
from expmate.csv_records import count_rows
from expmate.events import KIND_MESSAGE, Event
from expmate.history import (
    END,
    RESUME,
    START,
    previous_end,
    read_attempts,
    started_attempts,
)
from expmate.metric_store import MetricStore
from expmate.rank_files import attempts_name, events_name, log_name, metrics_name
from expmate.sinks import AppendFile, report_failure

try:
    import fcntl
except ImportError:  # not POSIX: no kernel lock, only the check within this process
    fcntl = None  # type: ignore[assignment]

_held: set[tuple[int, int]] = set()  # (device, inode) of the history files this process locks
_open: set[AttemptLog] = set()  # attempts not ended yet: ended at exit or on a fatal SIGTERM
_registry_lock = threading.Lock()


class RunDirInUseError(RuntimeError):
    """Another logger, in this process or another, is writing the same files of a run directory."""


def host_name() -> str:
    """This machine's name (no import: also called at interpreter exit)."""
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "?")


def restart_count() -> int:
    """torchrun's ``TORCHELASTIC_RESTART_COUNT`` (0 when absent or not a number)."""
    raw = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return int(raw) if raw.isdigit() else 0


def _files_of(rank: int) -> str:
    names = [log_name(rank), events_name(rank), metrics_name(rank)]
    return ", ".join([*names, "best.json"] if rank == 0 else names)


def _in_use(run_dir: Path, rank: int, path: Path) -> RunDirInUseError:
    """The error for a lock held by someone else: who, from the last start record that recorded
    no end (the holder's), and what to do."""
    records = read_attempts(path)
    starts = [i for i, r in enumerate(records) if r.get("event") == START]
    start = records[starts[-1]] if starts else None
    if start is not None and any(r.get("event") == END for r in records[starts[-1] + 1 :]):
        start = None
    if start is None:
        holder = "another process that has not recorded itself yet"
        advice = "wait for that process to end (or stop it), or use another run_dir"
    else:
        pid, host = start.get("pid"), start.get("host")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(start.get("time", 0))))
        if pid == os.getpid() and host == host_name():
            holder = f"another ExperimentLogger of this process (pid {pid} on host {host}, open since {since})"
            advice = "close() that logger first, or use another run_dir"
        else:
            holder = f"process {pid} on host {host} (since {since})"
            advice = "wait for that process to end (or stop it), or use another run_dir"
    return RunDirInUseError(
        f"run_dir {str(run_dir)!r} is in use: rank {rank}'s files ({_files_of(rank)}) are "
        f"being written by {holder}. Only one logger may write them: {advice}"
    )


class AttemptLog:
    """The lock on one rank's files and that rank's restart history (``attempts*.jsonl``).

    Args:
        run_dir: the run directory (it exists).
        rank: the logger's rank.
        world_size: the number of processes in the job.

    Raises:
        RunDirInUseError: another logger holds the files (named, with its pid and host).
    """

    def __init__(self, run_dir: Path, rank: int, *, world_size: int) -> None:
        self.path = run_dir / attempts_name(rank)
        self.rank = rank
        self._key: tuple[int, int] | None = None
        self._lock_fd = self._acquire(run_dir)
        try:
            self.records = read_attempts(self.path)
            self.attempt = started_attempts(self.records)
            self.restart_count = restart_count()
            self._file = AppendFile(self.path)
            self._ended = False
            self._append(
                {
                    "event": START,
                    "attempt": self.attempt,
                    "time": time.time(),
                    "restart_count": self.restart_count,
                    "host": host_name(),
                    "pid": os.getpid(),
                    "rank": rank,
                    "world_size": world_size,
                    "previous": previous_end(self.records),
                }
            )
        except BaseException:
            self._release()
            raise
        with _registry_lock:
            _open.add(self)

    def _acquire(self, run_dir: Path) -> int:
        """Open the history file and lock it for this logger alone."""
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino)
        with _registry_lock:
            if key in _held:
                os.close(fd)
                raise _in_use(run_dir, self.rank, self.path)
            _held.add(key)
        self._key = key
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._release(fd)
            raise _in_use(run_dir, self.rank, self.path) from None
        except OSError as exc:  # a filesystem without locks: go on, unprotected
            report_failure(f"locking {self.path} (another logger is not kept out)", exc)
        return fd

    def _append(self, record: dict[str, Any]) -> None:
        """Write one record now (one whole line; a failing disk is reported once)."""
        self.records.append(record)
        self._file.write([json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"])

    def resume(self, step: int, metrics_rows: int) -> dict[str, Any]:
        """Append the resume marker: ``metrics_rows`` rows of this rank's metrics file precede it."""
        record = {
            "event": RESUME,
            "attempt": self.attempt,
            "time": time.time(),
            "restart_count": self.restart_count,
            "step": step,
            "metrics_rows": metrics_rows,
        }
        self._append(record)
        return record

    def end(self, outcome: dict[str, Any]) -> None:
        """Append how this attempt ended (``run_end.outcome(...)``), once; later calls do nothing."""
        if self._ended or self._lock_fd == -1:
            return
        self._ended = True
        with _registry_lock:
            _open.discard(self)
        self._append({"event": END, "attempt": self.attempt, "time": time.time(), **outcome})

    def close(self, outcome: dict[str, Any]) -> None:
        """Record the end (if not yet) and release the lock."""
        self.end(outcome)
        self._file.close()
        self._release()

    def detach(self) -> None:
        """In a forked child: close the inherited descriptors (the parent keeps the lock) and
        never write a record."""
        self._ended = True
        with _registry_lock:
            _open.discard(self)
        self._file.abandon()
        if self._lock_fd != -1:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # closing a copy releases nothing: no LOCK_UN here
            self._lock_fd = -1
        if self._key is not None:
            _held.discard(self._key)
            self._key = None

    def _release(self, fd: int | None = None) -> None:
        fd = self._lock_fd if fd is None else fd
        if fd != -1:
            with contextlib.suppress(OSError):
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        self._lock_fd = -1
        if self._key is not None:
            with _registry_lock:
                _held.discard(self._key)
            self._key = None


def resume_history(attempts: AttemptLog, metrics: MetricStore, step: int) -> dict[str, Any]:
    """Mark a resume at ``step`` after the rows on disk (flushed, no flush running) and rewind
    the bests and latest values to the surviving history; returns the marker."""
    marker = attempts.resume(step, count_rows(metrics.rows_path()))
    metrics.rewind(step, attempts.records)
    return marker


def resume_event(marker: dict[str, Any], run_dir: Path) -> Event:
    """The event that says so in ``events.jsonl`` (written whatever the log level)."""
    step = marker["step"]
    message = (
        f"Resumed at step {step} (attempt {marker['attempt']}, restart "
        f"{marker['restart_count']}): rows of {run_dir} with step >= {step} logged before "
        "are superseded"
    )
    fields = {
        "resume_step": step,
        "attempt": marker["attempt"],
        "restart_count": marker["restart_count"],
    }
    return Event(marker["time"], "INFO", message, KIND_MESSAGE, None, fields)


def _end_all() -> None:
    """At exit, or before the process dies of SIGTERM: record how every open attempt ended."""
    with _registry_lock:
        attempts = list(_open)
    if not attempts:
        return
    outcome = run_end.outcome(at_exit=True)
    for attempt in attempts:
        attempt.end(outcome)


def _after_fork_in_child() -> None:
    """A forked child holds none of its parent's attempts (their loggers detach them)."""
    global _registry_lock
    _registry_lock = threading.Lock()  # it may have been held by another thread at the fork
    _open.clear()
    _held.clear()


flushing.at_end(_end_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = [
    "AttemptLog",
    "RunDirInUseError",
    "host_name",
    "restart_count",
    "resume_event",
    "resume_history",
]
