"""The human logs of a run (``exp.log``, ``exp_rank{r}.log``) read as records and merged by time.

A record is a line ``YYYY-MM-DD HH:MM:SS - LEVEL - message`` and the lines after it that do not
start with a time (a message with newlines). Records of several ranks are merged by their time
text, which has whole seconds: within one second, lower ranks come first, and each file keeps its
own order. A file is read from an offset on, so a live file can be followed: only whole lines are
returned, a last line still being written waits for its newline.

Example:
    >>> [r.lines for r in parse_records(b"2025-01-23 14:30:22 - INFO - a\\nb\\n", rank=0)]
    [['2025-01-23 14:30:22 - INFO - a', 'b']]
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

__all__ = ["LogFile", "Record", "merge_records", "parse_records", "rank_logs"]

_CLOCK = re.compile(rb"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} - ")
_CLOCK_CHARS = 19
_RANK_LOG = re.compile(r"exp_rank(\d+)\.log")
_BLOCK = 1 << 16


@dataclass
class Record:
    """One logged message: its time text, the rank whose file holds it, its lines."""

    clock: str
    rank: int
    lines: list[str] = field(default_factory=list)


def rank_logs(run_dir: Path) -> dict[int, Path]:
    """The human log of each rank present in ``run_dir``: ``{0: exp.log, 1: exp_rank1.log}``."""
    logs = {0: run_dir / "exp.log"} if (run_dir / "exp.log").is_file() else {}
    for path in run_dir.glob("exp_rank*.log"):
        match = _RANK_LOG.fullmatch(path.name)
        if match and path.is_file():
            logs[int(match.group(1))] = path
    return dict(sorted(logs.items()))


def log_name(rank: int) -> str:
    """``exp.log`` for rank 0, ``exp_rank{r}.log`` otherwise."""
    return "exp.log" if rank == 0 else f"exp_rank{rank}.log"


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


def merge_records(per_rank: Iterable[list[Record]]) -> Iterator[Record]:
    """The records of several ranks (each list in file order, given in rank order) by time."""
    return heapq.merge(*per_rank, key=lambda record: record.clock)


def offset_of_last(path: Path, count: int) -> int:
    """The byte offset where the last ``count`` records of ``path`` begin (0 when it has fewer),
    found by reading blocks from the end, so a long log is not read whole."""
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
            whole = data[
                : data.rfind(b"\n") + 1
            ]  # a last line still being written is no record yet
            starts = _record_starts(whole, at_file_start=position == 0)
            if len(starts) >= count:
                return position + starts[-count]
        return 0


def _record_starts(data: bytes, *, at_file_start: bool) -> list[int]:
    """Offsets in ``data`` of lines that begin with a time (only lines known to be whole)."""
    starts = [0] if at_file_start and _CLOCK.match(data) else []
    index = data.find(b"\n")
    while index != -1:
        if _CLOCK.match(data, index + 1):
            starts.append(index + 1)
        index = data.find(b"\n", index + 1)
    return starts


class LogFile:
    """One rank's human log, read from an offset on as it grows.

    Args:
        path: the file.
        rank: its rank.
        offset: where reading starts.
    """

    def __init__(self, path: Path, rank: int, offset: int = 0) -> None:
        self.path = path
        self.rank = rank
        self.offset = offset
        self._partial = b""
        self._clock = ""
        try:
            self._inode: int | None = path.stat().st_ino
        except FileNotFoundError:
            self._inode = None

    def read_new(self) -> list[Record]:
        """The records completed since the last call: a last line without its newline waits.

        A file replaced by another, or cut below what was read whole, is read again from its
        start; when only the unfinished last line went away (reopening a run sets a line cut by
        a kill aside), reading goes on after the last whole line.
        """
        try:
            with open(self.path, "rb") as handle:
                self._check_same_file(handle)
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        records = parse_records(data[:cut], rank=self.rank, clock=self._clock)
        if records:
            self._clock = records[-1].clock
        return records

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
