"""Forwarding rows to mirrors from background threads, never blocking the training loop.

Each mirror has its own thread and its own bounded queue (a ``deque``: the training thread only
appends a tuple to it). The thread starts the mirror, hands it batches of rows, and at close the
best values and how the run ended. A mirror that raises is disabled after one warning; a mirror
that cannot keep up sees new rows dropped while its queue is full. Either way the rows it did not
take are counted, and ``close()`` reports them; it waits a bounded time for each mirror.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from expmate.mirrors.base import MetricRow, Mirror, RunInfo
from expmate.sinks import report_failure


class MirrorBacklog(RuntimeError):
    """A mirror's queue is full: it takes rows more slowly than the run writes them."""


class MirrorWorker:
    """One mirror's queue and the thread that feeds it.

    Args:
        mirror: the mirror.
        run: what its ``start`` is told.
    """

    def __init__(self, mirror: Mirror, run: RunInfo) -> None:
        self.mirror = mirror
        self._run_info = run
        self._label = f"mirror {mirror.name!r} for {run.run_dir}"
        self._rows: deque[tuple[Any, ...]] = deque()
        self._capacity = max(1, int(mirror.queue_size))
        self._half = max(1, self._capacity // 2)
        self._wake = threading.Event()
        self._done = threading.Event()
        self._closing = False
        self._abandoned = False
        self._final: tuple[dict[str, Any], dict[str, Any]] = ({}, {"status": "finished"})
        self.failed = False  # a method raised: the mirror gets no more calls
        self.forwarded = 0  # rows the mirror took (its log_metrics returned)
        self.overflow = 0  # rows dropped because the queue was full
        self.discarded = 0  # rows taken from the queue but not forwarded (the mirror had failed)
        self.in_flight = 0  # rows in the batch the mirror is busy with
        self.problems: list[str] = []
        self._thread = threading.Thread(
            target=self._run, name=f"expmate-mirror-{mirror.name}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ training thread

    def put(self, step: int, split: str, name: str, value: float | int, wall: float) -> None:
        """Queue one row; when the queue is full, count it as dropped instead (never blocks)."""
        rows = self._rows
        waiting = len(rows)
        if waiting < self._capacity:
            rows.append((step, split, name, value, wall))
            if waiting == self._half:
                self._wake.set()
        else:
            self._overflowed()

    def _overflowed(self) -> None:
        self.overflow += 1
        if self.overflow == 1:
            self.problems.append(f"its queue of {self._capacity} rows was full")
            report_failure(
                f"forwarding metrics to {self._label}",
                MirrorBacklog(
                    f"{self._capacity} rows are waiting for it; newer rows are dropped and "
                    "counted until it catches up"
                ),
            )

    # ------------------------------------------------------------------ background thread

    def _run(self) -> None:
        try:
            if self._call("starting", self.mirror.start, self._run_info):
                run_first_at_exit()
            interval = max(0.01, float(self.mirror.interval))
            while not self._abandoned:
                self._wake.wait(interval)
                self._wake.clear()
                closing = self._closing  # read first: every row put before close() is queued
                self._forward_waiting()
                if closing:
                    break
            if not (self.failed or self._abandoned):
                best, outcome = self._final
                if best:
                    self._call("sending best values to", self.mirror.log_best, best)
                if not self.failed:
                    self._call("finishing", self.mirror.finish, outcome)
        finally:
            self._done.set()

    def _forward_waiting(self) -> None:
        rows = self._rows
        size = max(1, int(self.mirror.batch_size))
        while rows and not self._abandoned:
            batch = [MetricRow._make(rows.popleft()) for _ in range(min(size, len(rows)))]
            if self.failed:
                self.discarded += len(batch)
                continue
            self.in_flight = len(batch)
            if self._call("forwarding metrics to", self.mirror.log_metrics, batch):
                self.forwarded += len(batch)
            else:
                self.discarded += len(batch)
            self.in_flight = 0

    def _call(self, what: str, method: Callable[[Any], None], arg: Any) -> bool:
        """Call a mirror method; on an exception disable the mirror, warn once, return False."""
        try:
            method(arg)
        except Exception as exc:  # noqa: BLE001 - a broken tracker must never reach training
            self.failed = True
            doing = what.removesuffix(" to")
            self.problems.append(f"it raised {type(exc).__name__} while {doing}: {exc}")
            report_failure(f"{what} {self._label}", exc)
            return False
        return True

    # ------------------------------------------------------------------ close

    def close(self, best: dict[str, Any], outcome: dict[str, Any]) -> None:
        """Ask the thread to forward what is waiting, then the best values, then finish."""
        self._final = (best, outcome)
        self._closing = True
        self._wake.set()

    def wait(self, deadline: float) -> None:
        """Wait until the thread is done or ``deadline`` (``time.monotonic()``) passes."""
        if not self._done.wait(max(0.0, deadline - time.monotonic())):
            self._abandoned = True
            self.problems.append(f"it was not done {self.mirror.drain_timeout:g} s after close")

    def report(self) -> tuple[str, dict[str, Any]] | None:
        """The WARNING of the close report, or None when every row was forwarded."""
        left = len(self._rows) + self.in_flight if self._abandoned else 0
        lost = self.overflow + self.discarded + left
        if lost == 0 and not self.problems:
            return None
        message = (
            f"Mirror {self.mirror.name!r} forwarded {self.forwarded} of {self.forwarded + lost} "
            f"metric values ({lost} not forwarded): {'; '.join(self.problems)}"
        )
        fields = {"mirror": self.mirror.name, "forwarded": self.forwarded, "not_forwarded": lost}
        return message, fields


class MirrorSet:
    """The mirrors of one logger on global rank 0, fed from the rows of its metric store.

    Args:
        mirrors: the mirrors (already validated).
        store: the metric store whose rows of ``metrics.csv`` are forwarded (it gets a
            ``listener``).
        run: what the mirrors' ``start`` is told.
    """

    def __init__(self, mirrors: list[Mirror], store: Any, run: RunInfo) -> None:
        self._store = store
        self._pid = os.getpid()
        self.workers = [MirrorWorker(mirror, run) for mirror in mirrors]
        puts = [worker.put for worker in self.workers]
        if len(puts) == 1:
            store.listener = puts[0]
        else:

            def put_all(step: int, split: str, name: str, value: float | int, wall: float) -> None:
                for put in puts:
                    put(step, split, name, value, wall)

            store.listener = put_all
        with _open_lock:
            _open.add(self)
        run_first_at_exit()

    def close(self, outcome: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """Forward what is waiting and the best values, finish each mirror (waiting at most its
        ``drain_timeout``); returns the WARNINGs of the mirrors that did not get everything."""
        with _open_lock:
            _open.discard(self)
        if os.getpid() != self._pid:  # a forked child: the threads stayed in the parent
            return []
        try:
            self._store.materialize()
        except Exception as exc:  # noqa: BLE001 - the rows' files report this themselves
            report_failure("copying device metric values for the mirrors", exc)
        with self._store.lock:
            self._store.listener = None
            best = self._store.best.as_dict()
        begun = time.monotonic()
        for worker in self.workers:
            worker.close(best, outcome)
        for worker in self.workers:
            worker.wait(begun + max(0.0, float(worker.mirror.drain_timeout)))
        return [report for worker in self.workers if (report := worker.report()) is not None]


_open: set[MirrorSet] = set()
_open_lock = threading.Lock()


def _close_at_exit() -> None:
    """Close the mirrors of loggers nobody closed; their losses go to stderr."""
    from expmate import run_end

    with _open_lock:
        still_open = list(_open)
    for mirrors in still_open:
        for message, _ in mirrors.close(run_end.outcome(at_exit=True)):
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"expmate: {message}\n")


def run_first_at_exit() -> None:
    """(Re-)register the exit hook, so that it runs before hooks registered so far (a tracker's
    own, added when it started, would otherwise close its run before the last rows arrive)."""
    atexit.unregister(_close_at_exit)
    atexit.register(_close_at_exit)


def _forget_in_child() -> None:
    global _open_lock
    _open.clear()
    _open_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def run_info(run_dir: Path, run_id: str) -> RunInfo:
    """The :class:`RunInfo` of a run, with the active ``parse_config`` config as plain values."""
    from expmate.config import _plain, active_config

    config = active_config()
    return RunInfo(run_dir, run_id, None if config is None else _plain(config.to_dict()))
