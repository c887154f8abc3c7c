"""A run's attempts and its surviving history: the restart history file and the resume markers.

Each rank keeps a restart history, ``attempts.jsonl`` (``attempts_rank{r}.jsonl`` on rank r > 0):
one strict-JSON record a line, appended when a logger starts on the run directory (``start``),
when training resumes from a checkpoint (``resume``: the marker) and when the process ends
(``end``). A resume marker at step T supersedes every row of the same rank's metrics file that
precedes the marker and has a step >= T: those rows stay on disk; the surviving history leaves
them out. Nothing here does I/O but :func:`read_attempts`, and nothing imports the logger, so
readers of run directories use it as well as the logger.

Example:
    >>> rows = [(0, "val", "loss", 0.9), (1, "val", "loss", 0.2), (1, "val", "loss", 0.5)]
    >>> markers = [{"event": "resume", "step": 1, "metrics_rows": 2}]
    >>> surviving_rows(rows, markers)
    [(0, 'val', 'loss', 0.9), (1, 'val', 'loss', 0.5)]
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from expmate.best import BestTracker
from expmate.rank_files import attempts_name, metrics_name

Row = TypeVar("Row")

START, RESUME, END = "start", "resume", "end"
KILLED = "killed"  # how an attempt ended that recorded no end (SIGKILL, OOM killer, os._exit)


def read_attempts(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of a restart history file, in file order; ``[]`` if there is none.

    A line that does not parse (a last line cut by a kill) is skipped.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            records.append(record)
    return records


def resume_markers(records: Iterable[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """``(metrics_rows, step)`` of every resume marker among ``records``, in file order."""
    return [
        (int(r["metrics_rows"]), int(r["step"]))
        for r in records
        if r.get("event") == RESUME and "metrics_rows" in r and "step" in r
    ]


def _step_of(row: Any) -> int | None:
    """The step of a row given as a mapping (``row["step"]``) or a sequence (``row[0]``)."""
    raw = row["step"] if isinstance(row, Mapping) else row[0]
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None  # a malformed row: counted, never superseded


def iter_surviving(rows: Iterable[Row], records: Iterable[Mapping[str, Any]]) -> Iterator[Row]:
    """The rows of the surviving history, lazily, in file order (see :func:`surviving_rows`)."""
    markers = sorted(resume_markers(records))
    if not markers:
        yield from rows
        return
    # limits[i]: the lowest resume step among the markers at or after markers[i] in the file; a
    # row at index n is superseded when its step >= the lowest step of the markers after it.
    positions = [m[0] for m in markers]
    limits = [m[1] for m in markers]
    for i in range(len(limits) - 2, -1, -1):
        limits[i] = min(limits[i], limits[i + 1])
    for index, row in enumerate(rows):
        after = bisect.bisect_right(positions, index)
        if after < len(positions):
            step = _step_of(row)
            if step is not None and step >= limits[after]:
                continue
        yield row


def surviving_rows(rows: Iterable[Row], records: Iterable[Mapping[str, Any]]) -> list[Row]:
    """The metric rows that make up a run's history once its resumes are applied.

    Args:
        rows: every data row of one metrics file (after the header, as a CSV reader yields
            them), in file order; a row is a mapping with a ``step`` key (``csv.DictReader``) or
            a sequence whose first item is the step (``step, split, name, value, wall_time``).
            Steps may be ints or their text.
        records: the records of the same rank's restart history (:func:`read_attempts`), or
            just its resume markers: mappings with ``event == "resume"``, ``step`` and
            ``metrics_rows``. Other records are ignored.

    Returns:
        The rows (the same objects) that no resume marker supersedes: a marker with
        ``metrics_rows == n`` and ``step == T`` removes every row among the first n whose step
        is >= T.
    """
    return list(iter_surviving(rows, records))


def best_of_rows(
    rows: Iterable[Sequence[Any]], modes: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """The best value of each ``{split}_{name}`` key in ``modes`` over ``rows``.

    Args:
        rows: ``(step, split, name, value, ...)`` in file order (texts or numbers).
        modes: ``{"val_loss": "min", ...}``: the keys to track and their modes.

    Returns:
        ``{"val_loss": {"value", "step", "mode"}}`` for each key that has a finite value, with
        the rules of ``best.json`` (NaN and infinities never count; the earlier of equal values
        wins).
    """
    tracker = BestTracker(None)
    for row in rows:
        if len(row) < 4:
            continue
        key = f"{row[1]}_{row[2]}"
        mode = modes.get(key)
        if mode is None:
            continue
        try:
            step, value = int(row[0]), float(row[3])
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            tracker.update(key, value, step, mode)
    return tracker.as_dict()


def previous_end(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """How the last attempt among ``records`` ended, or None if none started.

    Returns:
        ``{"attempt": k, "status": ...}`` with the fields of its ``end`` record (``exception``,
        ``message``, ``signal``), or ``{"attempt": k, "status": "killed"}`` when it recorded no
        end.
    """
    last_start = None
    for i, record in enumerate(records):
        if record.get("event") == START:
            last_start = i
    if last_start is None:
        return None
    attempt = records[last_start].get("attempt")
    for record in records[last_start + 1 :]:
        if record.get("event") == END:
            fields = {k: v for k, v in record.items() if k not in ("event", "attempt", "time")}
            return {"attempt": attempt, **fields}
    return {"attempt": attempt, "status": KILLED}


def started_attempts(records: Iterable[Mapping[str, Any]]) -> int:
    """How many attempts ``records`` hold (the number of the next attempt)."""
    return sum(1 for r in records if r.get("event") == START)


__all__ = [
    "END",
    "KILLED",
    "RESUME",
    "START",
    "attempts_name",
    "best_of_rows",
    "iter_surviving",
    "metrics_name",
    "previous_end",
    "read_attempts",
    "resume_markers",
    "started_attempts",
    "surviving_rows",
]
