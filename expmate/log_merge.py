"""The human logs of a run (``exp.log``, ``exp_rank{r}.log``) read as records and merged by time.

A record is a line ``YYYY-MM-DD HH:MM:SS - LEVEL - message`` and the lines after it that do not
start with a time (a message with newlines). The text comes from the human log; the time within
the second comes from the same message's event in the rank's ``events.jsonl`` (written with a
float timestamp just before the human log at each flush), so ranks interleave as they logged. A
record whose event cannot be found keeps its whole second, after the rank's records already in
that second. Ties go to the lower rank; each file keeps its own order.

Files are read from an offset on, so a live run can be followed: only whole lines are returned, a
last line still being written waits for its newline.

Example:
    >>> [r.lines for r in parse_records(b"2025-01-23 14:30:22 - INFO - a\\nb\\n", rank=0)]
    [['2025-01-23 14:30:22 - INFO - a', 'b']]
"""

from __future__ import annotations

import heapq
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from expmate.rank_files import events_name, log_name

__all__ = [
    "GrowingFile",
    "RankLog",
    "Record",
    "log_name",
    "merge_records",
    "offset_of_last",
    "parse_records",
    "rank_logs",
]

_CLOCK = re.compile(rb"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} - ")
_HEADER = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:(\d{2}) - ([A-Z]+) - ", re.S)
_CLOCK_CHARS = 19
_RANK_LOG = re.compile(r"exp_rank(\d+)\.log")
_BLOCK = 1 << 16
_RATE_LIMITED = b', "rate_limited": true}'
_EVENT_MARGIN = 256  # events read before the first shown record, in case the JSONL is ahead
_WINDOW = 2048  # how many of the next events a record's event is looked for among


@dataclass
class Record:
    """One logged message: its time text, the rank whose file holds it, its lines, and the
    fraction of a second at which it was logged (0.0 when unknown)."""

    clock: str
    rank: int
    lines: list[str] = field(default_factory=list)
    fraction: float = 0.0


def rank_logs(run_dir: Path) -> dict[int, Path]:
    """The human log of each rank present in ``run_dir``: ``{0: exp.log, 1: exp_rank1.log}``."""
    logs = {0: run_dir / "exp.log"} if (run_dir / "exp.log").is_file() else {}
    for path in run_dir.glob("exp_rank*.log"):
        match = _RANK_LOG.fullmatch(path.name)
        if match and path.is_file():
            logs[int(match.group(1))] = path
    return dict(sorted(logs.items()))


def parse_records(data: bytes, *, rank: int, clock: str = "") -> list[Record]:
    """The records in ``data`` (whole lines). Lines before the first timed line form a record
    of their own with ``clock`` (the time of the record they continue)."""
    records: list[Record] = []
    for raw in data.splitlines():
        line = raw.decode("utf-8", "replace")
        if _CLOCK.match(raw):
            records.append(Record(line[:_CLOCK_CHARS], rank, [line]))
        elif records:
            records[-1].lines.append(line)
        else:
            records.append(Record(clock, rank, [line]))
    return records


def merge_records(per_rank: Iterable[Iterable[Record]]) -> Iterator[Record]:
    """The records of several ranks (each in file order, given in rank order) by time."""
    return heapq.merge(*per_rank, key=lambda record: (record.clock, record.fraction))


def offset_of_last(path: Path, count: int, *, records: bool = True) -> int:
    """The byte offset where the last ``count`` records of ``path`` begin (0 when it has fewer),
    found by reading blocks from the end, so a long file is not read whole.

    Args:
        path: a human log (``records=True``: a record starts at a line with a time) or an events
            file (``records=False``: every line not hidden by ``log_every`` counts).
        count: how many.
    """
    with open(path, "rb") as handle:
        end = handle.seek(0, 2)
        if count <= 0:
            return end
        position, data = end, b""
        while position > 0:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
            whole = data[: data.rfind(b"\n") + 1]  # a line still being written is none yet
            starts = _starts(whole, at_file_start=position == 0, records=records)
            if len(starts) >= count:
                return position + starts[-count]
        return 0


def _starts(data: bytes, *, at_file_start: bool, records: bool) -> list[int]:
    """Offsets in ``data`` of the lines that count (only lines known to begin there)."""
    starts = [0] if at_file_start else []
    index = data.find(b"\n")
    while index != -1:
        starts.append(index + 1)
        index = data.find(b"\n", index + 1)
    if starts and starts[-1] == len(data):
        starts.pop()
    if records:
        return [s for s in starts if _CLOCK.match(data, s)]
    return [s for s in starts if not data[s : data.find(b"\n", s)].endswith(_RATE_LIMITED)]


class GrowingFile:
    """A file read from an offset on as it grows, in whole lines.

    A file replaced by another, or cut below what was read whole, is read again from its start;
    when only the unfinished last line went away (reopening a run sets a line cut by a kill
    aside), reading goes on after the last whole line.
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.more = False  # the last read stopped at its size limit, before the end
        self._partial = b""
        try:
            self._inode: int | None = path.stat().st_ino
        except FileNotFoundError:
            self._inode = None

    def read_lines(self, limit: int = -1) -> bytes:
        """The whole lines written since the last call (b"" for none, or no file yet), reading
        at most ``limit`` bytes (all when negative); :attr:`more` says whether it stopped there."""
        try:
            with open(self.path, "rb") as handle:
                self._check_same_file(handle)
                handle.seek(self.offset)
                data = handle.read(limit)
        except FileNotFoundError:
            self.more = False
            return b""
        self.more = 0 < limit == len(data)
        self.offset += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return data[:cut]

    def _check_same_file(self, handle: BinaryIO) -> None:
        inode = os.fstat(handle.fileno()).st_ino
        size = handle.seek(0, 2)
        whole = self.offset - len(self._partial)
        if (self._inode is not None and inode != self._inode) or size < whole:
            self.offset, self._partial = 0, b""
        elif self._partial:
            handle.seek(whole)
            if handle.read(len(self._partial)) != self._partial:
                self.offset, self._partial = whole, b""
        self._inode = inode


class RankLog:
    """One rank's human log and the event times that order its records.

    Events are read lazily, a block at a time, as records need them, so a long run never has
    more than a few thousand of them in memory.

    Args:
        run_dir: the run directory.
        rank: the rank.
        last: start before the last ``last`` records (None: at the start of the file).
    """

    def __init__(self, run_dir: Path, rank: int, last: int | None = None) -> None:
        self.rank = rank
        log, events = run_dir / log_name(rank), run_dir / events_name(rank)
        start = events_start = 0
        if last is not None and log.exists():
            start = offset_of_last(log, last)
        if last is not None and events.exists():
            events_start = offset_of_last(events, last + _EVENT_MARGIN, records=False)
        self.log = GrowingFile(log, start)
        self.events = GrowingFile(events, events_start)
        self._pending: list[tuple[int, str, str, float]] = []
        self._head = 0  # events before it are used up
        self._clock = ""
        self._fraction = 0.0

    def read_new(self, limit: int = -1) -> list[Record]:
        """The records completed since the last call (from at most ``limit`` bytes of the log),
        each with its fraction of a second."""
        records = parse_records(self.log.read_lines(limit), rank=self.rank, clock=self._clock)
        for record in records:
            fraction = self._match(record)
            if fraction is None:
                fraction = self._fraction if record.clock == self._clock else 0.0
            record.fraction = self._fraction = fraction
            self._clock = record.clock
        return records

    def stream(self) -> Iterator[Record]:
        """Every record from the current position to the end, read a block at a time."""
        while True:
            yield from self.read_new(_BLOCK)
            if not self.log.more:
                return

    def _pull(self) -> bool:
        """Read one more block of events; False at the end of the file."""
        for raw in self.events.read_lines(_BLOCK).splitlines():
            try:
                event = json.loads(raw)
                stamp, level, message = event["timestamp"], event["level"], event["message"]
            except (ValueError, KeyError, TypeError):
                continue
            if event.get("rate_limited") is True or not isinstance(stamp, (int, float)):
                continue
            self._pending.append((int(stamp) % 60, str(level), str(message), float(stamp)))
        return self.events.more

    def _match(self, record: Record) -> float | None:
        """The fraction of a second of the record's event, among the next :data:`_WINDOW`
        events; the events before it are used up. None when it is not there."""
        text = "\n".join(record.lines)
        header = _HEADER.match(text)
        if header is None:
            return None
        # The seconds digits, not the clock text: the reader's time zone may differ.
        wanted = (int(header.group(1)), header.group(2), text[header.end() :])
        if self._head > _BLOCK:
            del self._pending[: self._head]
            self._head = 0
        index = self._head
        while index < self._head + _WINDOW:
            while index == len(self._pending):
                more = self._pull()
                if index == len(self._pending) and not more:
                    return None
            at, level, message, stamp = self._pending[index]
            if (at, level, message) == wanted:
                self._head = index + 1
                return stamp % 1
            index += 1
        return None
