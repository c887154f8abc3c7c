"""One rank's metrics: the rows of its metrics CSV and the best value of each tracked metric.

Host numbers become CSV rows at once (in memory, written at the logger's next flush). Device
tensors wait as they are (a copy on the device) and travel to the host together, never one copy
(one GPU sync) per call: at a flush that must not wait (the logger's background flush, or one
forced by a full buffer) their copy is started without a host sync (:mod:`expmate.device_copy`:
pinned memory and a CUDA event) and their rows are recorded at a later flush, once the copy has
completed; a flush that may wait (``flush()``, ``close()``, exit) and a best or latest value asked
for wait for every copy.

Rows keep the order they were logged in: while device values are on their way, host values logged
after them wait behind them, so the file, ``best.json`` and the latest values never get ahead of
one another. At most :data:`MAX_COPIES` copies are in flight; a flush that would start one more
first waits for the oldest.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from expmate.best import BestTracker, Entry, detect_mode
from expmate.csv_records import read_rows
from expmate.device_copy import CUDA_CALLS, CudaCalls, HostCopy, PinnedBuffers
from expmate.history import best_of_rows, iter_surviving
from expmate.sinks import AppendFile, MetricsCsvSink
from expmate.summary import MetricEntry
from expmate.values import metric_value, text_value

# (CSV middle ``,split,name,``, best.json key ``split_name``, mode detected from the name)
KeyInfo = tuple[str, str, str | None]
# Called with (step, split, name, value, wall_time) for each row of the metrics CSV, as it is formed.
RowListener = Callable[[int, str, str, "float | int", float], None]
# (step, split, name, value or (device tensor, its stream), track_best, mode, wall_time, write)
Row = tuple[int, str, str, Any, bool, "str | None", float, bool]

MAX_COPIES = 4
"""Copies of device values to the host in flight at most (bounds memory when the device lags)."""


class _Copy:
    """Rows whose device values are on their way to the host (``copy`` None: none are)."""

    __slots__ = ("copy", "pinned", "rows")

    def __init__(self, rows: list[Row], copy: HostCopy | None, pinned: PinnedBuffers | None):
        self.rows = rows
        self.copy = copy
        self.pinned = pinned


class MetricStore:
    """Rows and best values of one rank, held until the owner flushes them.

    Args:
        csv_path: the metrics file (opened with the first row, so a rank that logs no metric of
            its own creates none).
        best_path: ``best.json``, or None to keep the bests in memory only (ranks other than 0).
        calls: the device calls of the copies (tests put a double here).
    """

    def __init__(
        self, csv_path: Path, best_path: Path | None, *, calls: CudaCalls = CUDA_CALLS
    ) -> None:
        self._csv_path = csv_path
        self._csv: MetricsCsvSink | None = None
        self.best = BestTracker(best_path)
        self._keys: dict[tuple[str, str], KeyInfo] = {}
        # best.json key -> [value, step] of the latest value recorded (written or, on ranks other
        # than 0, reduced and kept in memory); a list so an update is two stores.
        self.last: dict[str, list[Any]] = {}
        self.calls = calls
        # Rows logged since the last copy was started, behind device values (which they hold, in
        # order, with the stream each was made on); copies started, oldest first. One list,
        # appended to once per value and emptied in place: a SIGTERM handler that flushes in the
        # middle of a call can neither split a row from its tensor nor orphan it.
        self._open: list[Row] = []
        self._copies: deque[_Copy] = deque()
        self._spare: list[PinnedBuffers] = []  # pinned buffers of copies already read
        self._behind = False  # device values are waiting or on their way: new rows queue
        # Re-entrant for the same reason as the logger's: a SIGTERM handler may flush from inside.
        self.lock = threading.RLock()
        self._copying = threading.RLock()  # one thread at a time moves copies along, in order
        self.waiting = 0  # rows held in memory since the last take()
        self.listener: RowListener | None = None  # the live mirrors' queue, when there are any

    def key(self, split: Any, name: Any) -> KeyInfo:
        """The CSV middle, best key and detected mode of a (split, name) pair, validated once.

        Raises:
            TypeError, ValueError: split or name is not a non-empty string.
        """
        try:
            found = self._keys.get((split, name))
        except TypeError:  # unhashable: let the validation below name it
            found = None
        if found is not None:
            return found
        text_value(split, what="split")
        text_value(name, what="metric name")
        found = (MetricsCsvSink.middle(split, name), f"{split}_{name}", detect_mode(name))
        self._keys[(split, name)] = found
        return found

    def record(
        self,
        step: int,
        split: str,
        name: str,
        value: float | int,
        track_best: bool,
        mode: str | None,
        wall: float,
        *,
        write: bool = True,
    ) -> int:
        """Add one host value: a CSV row (when ``write``) and the best-value update.

        Returns:
            How many rows now wait in memory (the owner flushes when that grows too large).
        """
        middle, best_key, detected = self.key(split, name)
        with self.lock:
            if self._behind:  # after device values still on their way: keep the order
                self._open.append((step, split, name, value, track_best, mode, wall, write))
                self.waiting += 1
                return self.waiting
            if write:
                csv = self._csv
                if csv is None:
                    csv = self._csv = MetricsCsvSink(self._csv_path)
                csv.row(step, middle, value, wall)
                if self.listener is not None:
                    self.listener(step, split, name, value, wall)
            latest = self.last.get(best_key)
            if latest is None:
                self.last[best_key] = [value, step]
            else:
                latest[0] = value
                latest[1] = step
            if track_best and sys.modules["expmate"].track_metrics:
                direction = mode or detected
                if direction is not None:
                    self.best.update(best_key, float(value), step, direction)
            self.waiting += 1
            return self.waiting

    def defer(
        self,
        step: int,
        split: str,
        name: str,
        tensor: Any,
        track_best: bool,
        mode: str | None,
        wall: float,
    ) -> int:
        """Hold a device tensor (a copy: the caller may change it in place) until a flush copies
        it to the host.

        Returns:
            How many rows now wait in memory.
        """
        self.key(split, name)
        tensor = tensor.clone()  # on the device, asynchronous: no host sync
        stream = self.calls.stream_of(tensor)
        with self.lock:
            self._open.append((step, split, name, (tensor, stream), track_best, mode, wall, True))
            self._behind = True
            self.waiting += 1
            return self.waiting

    def materialize(self, *, wait: bool = True) -> None:
        """Move device values along: record the rows whose copy has completed, start copying
        those still waiting, and, with ``wait``, wait until every copy has completed and its rows
        are recorded.

        Without ``wait`` no device is waited for, unless :data:`MAX_COPIES` copies are still in
        flight: then the oldest is waited for first. Rows are recorded in the order logged.

        Raises:
            Exception: a copy failed (a device error); its device values are lost, the host
                values logged with them are recorded all the same.
        """
        with self._copying:
            self._collect(wait=False)
            self._start()
            if wait:
                self._collect(wait=True)

    def _start(self) -> None:
        """Start copying the device values logged since the last copy (no host sync)."""
        if not self._open:
            return
        while len(self._copies) >= MAX_COPIES:
            self._collect_first(wait=True)
        with self.lock:
            rows = self._open[:]
            self._open.clear()
        held = [row[3] for row in rows if not _is_number(row[3])]
        tensors = [tensor for tensor, _ in held]
        streams = [stream for _, stream in held]
        if not tensors and not self._copies:  # host rows only, nothing before them
            self._settle(rows, [])
            return
        copy, pinned = None, None
        if tensors:
            pinned = self._spare.pop() if self._spare else PinnedBuffers(self.calls)
            try:
                copy = HostCopy(tensors, pinned, streams=streams, calls=self.calls)
            except BaseException:
                # The device values are lost; the host rows keep their place.
                self._copies.append(_Copy([r for r in rows if _is_number(r[3])], None, None))
                raise
        self._copies.append(_Copy(rows, copy, pinned))

    def _collect(self, *, wait: bool) -> None:
        """Record the copies that have completed (all of them, waiting, with ``wait``), oldest
        first, stopping at the first that has not."""
        while self._copies and self._collect_first(wait=wait):
            pass

    def _collect_first(self, *, wait: bool) -> bool:
        """Record the oldest copy's rows if it has completed (or once it has, with ``wait``)."""
        pending = self._copies[0]
        values: list[float] | None = []
        error = None
        if pending.copy is not None:
            try:
                if not wait and not pending.copy.ready():
                    return False
                values = pending.copy.result()
            except Exception as exc:  # noqa: BLE001 - raised below, once its host rows are in
                values, error = None, exc
        self._copies.popleft()
        if pending.pinned is not None and error is None:
            self._spare.append(pending.pinned)
        self._settle(pending.rows, values)
        if error is not None:
            raise error
        return True

    def _settle(self, rows: list[Row], values: list[float] | None) -> None:
        """Record ``rows`` in order, their device values replaced by ``values`` (None: lost);
        then the host rows queued behind them, when no device value is left before those."""
        floats = iter(values or ())
        with self.lock:
            self._behind = False
            try:
                self._record_rows(rows, floats, lost=values is None)
                if not self._copies and all(_is_number(row[3]) for row in self._open):
                    rows = self._open[:]
                    self._open.clear()
                    self._record_rows(rows, floats, lost=False)
            finally:
                self._behind = bool(self._copies or self._open)

    def _record_rows(self, rows: list[Row], floats: Any, *, lost: bool) -> None:
        for step, split, name, value, track_best, mode, wall, write in rows:
            if not _is_number(value):
                if lost:
                    continue
                value = next(floats)
            self.record(step, split, name, value, track_best, mode, wall, write=write)

    def get_best(self, split: str, name: str) -> dict[str, Any] | None:
        """``{'value', 'step', 'mode'}`` of ``split``/``name`` (waiting device values first)."""
        self.materialize()
        return self.best.get(f"{split}_{name}")

    def get_last(self, split: str, name: str) -> dict[str, Any] | None:
        """``{'value', 'step'}`` of the latest value of ``split``/``name`` (device values first)."""
        self.materialize()
        latest = self.last.get(f"{split}_{name}")
        return None if latest is None else {"value": latest[0], "step": latest[1]}

    def take(
        self, *, tracked: bool = False
    ) -> tuple[
        list[tuple[AppendFile, list[str]]], dict[str, Entry] | None, list[MetricEntry] | None
    ]:
        """The waiting CSV lines and, taken with them, the bests (None if unchanged) and, when
        ``tracked``, the latest and best value of every metric (:meth:`tracked`).

        Taken together so neither ``best.json`` nor ``summary.json`` names a step whose row is not
        yet on disk.
        """
        with self.lock:
            batches = [(self._csv.file, self._csv.file.take())] if self._csv is not None else []
            bests = self.best.snapshot()
            entries = self.tracked() if tracked else None
            self.waiting = 0
        return batches, bests, entries

    def tracked(self) -> list[MetricEntry]:
        """``(split, name, [last value, last step] | None, best | None)`` of every metric seen."""
        with self.lock:
            keys = dict(self._keys)
            out: list[MetricEntry] = []
            for (split, name), (_, best_key, _) in keys.items():
                last = self.last.get(best_key)
                out.append(
                    (split, name, None if last is None else list(last), self.best.get(best_key))
                )
            return out

    def write(
        self,
        batches: list[tuple[AppendFile, list[str]]],
        bests: dict[str, Entry] | None,
        entries: list[MetricEntry] | None = None,
    ) -> list[MetricEntry] | None:
        """Write what :meth:`take` handed over: the rows first, then ``best.json`` naming only
        rows that reached the disk (a best whose row was lost to a failed write is not saved).

        Returns:
            ``entries`` (taken with the rows) with each best as ``best.json`` now holds it, for
            ``summary.json``.
        """
        lost: set[tuple[str, int, float]] = set()
        for target, lines in batches:
            if not target.write(lines):
                lost.update(_row_keys(lines, self._keys))
        self.best.write(self.best.settle(bests, lost))
        if entries is None or not self.best.unsaved:
            return entries
        with self.lock:
            keys = {pair: spec[1] for pair, spec in self._keys.items()}
        return [
            (split, name, last, self.best.as_written(keys[(split, name)], best))
            for split, name, last, best in entries
        ]

    def rewind(self, step: int, records: list[dict[str, Any]]) -> None:
        """Forget the history a resume at ``step`` supersedes (the rows are already on disk).

        The bests and latest values are recomputed from the surviving rows of this rank's
        metrics file (``records``: its restart history, the new resume marker included). A best
        known only in memory (a reduced metric on a rank other than 0) is kept if its step is
        before ``step``, else dropped.
        """
        latest: dict[str, list[str]] = {}

        def noting(rows: Any) -> Any:
            for row in rows:
                if len(row) >= 4:
                    latest[f"{row[1]}_{row[2]}"] = row
                yield row

        with self.lock:
            modes = self.best.modes()
            rows = noting(iter_surviving(read_rows(self._csv_path), records))
            bests = best_of_rows(rows, modes)
            for key, entry in self.best.as_dict().items():
                if key not in latest and key not in bests and entry["step"] < step:
                    bests[key] = entry
            self.best.replace({k: bests[k] for k in modes if k in bests})
            for key, value in list(self.last.items()):
                if value[1] < step:
                    continue
                row = latest.get(key)
                if row is None:
                    del self.last[key]
                else:
                    self.last[key] = [_number(row[3]), int(row[0])]

    def rows_path(self) -> Path:
        """This rank's metrics file (written or not yet)."""
        return self._csv_path

    def after_fork(self) -> None:
        """In a forked child: forget the parent's waiting rows and leave the parent's files alone.

        One writer per file: rows a child logs go to ``<stem>_pid<pid>.csv`` (created only if it
        logs any), and the child never writes ``best.json``.
        """
        if self._csv is not None:
            self._csv.file.discard()
            self._csv = None
        path = self._csv_path
        self._csv_path = path.with_name(f"{path.stem}_pid{os.getpid()}{path.suffix}")
        self._open = []
        self._copies = deque()
        self._spare = []
        self._behind = False
        self.waiting = 0
        self.best.path = None
        self.best.dirty = False
        self.listener = None  # the child's rows are not the run's: never mirrored
        self.lock = threading.RLock()
        self._copying = threading.RLock()

    def close(self) -> None:
        """Close the CSV file (the owner has flushed first)."""
        with self.lock:
            if self._csv is not None:
                self._csv.close()


def _is_number(value: Any) -> bool:
    """A host value (a row's value that is not a device tensor)."""
    return type(value) is float or type(value) is int


def _number(text: str) -> float | int:
    """A CSV value read back: an int when written as one, else a float."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _row_keys(
    lines: list[str], keys: dict[tuple[str, str], KeyInfo]
) -> set[tuple[str, int, float]]:
    """``(best key, step, value)`` of the CSV rows in ``lines`` (rows that could not be written).

    Parsed by hand, not with the csv module: this may run at interpreter exit, where an import
    would make an interrupted script exit with status 1 instead of 130. A row is
    ``{step}{middle}{value},{wall_time}`` with ``middle`` one of ``keys``' ``,split,name,``.
    """
    by_middle = {info[0]: info[1] for info in keys.values()}
    found = set()
    for line in lines:
        head = line.rstrip("\n").rpartition(",")[0]  # without wall_time
        head, _, value = head.rpartition(",")
        cut = head.find(",")
        key = by_middle.get(head[cut:] + ",")
        if cut > 0 and key is not None:
            try:
                found.add((key, int(head[:cut]), float(value)))
            except ValueError:
                continue
    return found


def checked_metrics(store: MetricStore, split: Any, metrics: Any) -> list[tuple[str, Any]]:
    """The ``(name, value)`` items of ``metrics``, every one validated (values converted as
    ``log_metric`` does), so a bad item is rejected before any of them is logged.

    Raises:
        TypeError, ValueError: not a mapping, or a bad split, name or value (named).
    """
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping of name to value, got {type(metrics).__name__}")
    items = []
    for name, value in metrics.items():
        store.key(split, name)
        items.append((name, metric_value(value, what=f"value of metric {split!r}/{name!r}")))
    return items
