"""Readers for the files of a run directory, tolerant of a run still being written or killed.

Every writer appends whole lines, so a run being written or killed by SIGKILL can show at most
one defect per file: a last line without its newline. It is skipped, with one
:class:`RunFileWarning`, never an exception. Files replaced atomically (``best.json``,
``summary.json``, ``run.json``) always parse when expmate wrote them; one that does not is a
:class:`RunError` naming it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from expmate.history import iter_surviving, resume_markers

METRICS_HEADER = ["step", "split", "name", "value", "wall_time"]
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class RunError(ValueError):
    """A path that is not a run, a run file that cannot be read, or data the run does not have."""


class RunFileWarning(UserWarning):
    """A run file had lines that were skipped (a last line cut short by a kill, say)."""


def number(value: Any) -> Any:
    """Undo the strict-JSON spelling of non-finite floats (``"NaN"`` -> ``nan``)."""
    if type(value) is str:
        return _NONFINITE.get(value, value)
    return value


def read_text(path: Path) -> str | None:
    """The text of ``path``, or None when it does not exist.

    Raises:
        RunError: it exists but cannot be read.
    """
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None


def whole_lines(text: str, path: Path) -> str:
    """``text`` without a last line that lacks its newline (warned about once)."""
    if not text or text.endswith("\n"):
        return text
    cut = text.rfind("\n") + 1
    warnings.warn(
        f"{path}: its last line is cut short (the run is being written or was killed); "
        f"{len(text) - cut} bytes skipped",
        RunFileWarning,
        stacklevel=3,
    )
    return text[:cut]


def read_json(path: Path) -> Any:
    """The JSON value of ``path`` (non-finite spellings kept as strings), or None if absent.

    Raises:
        RunError: the file exists but is not valid JSON.
    """
    text = read_text(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RunError(f"{str(path)!r} is not valid JSON ({exc})") from None


def read_json_object(path: Path) -> dict[str, Any] | None:
    """Like :func:`read_json`, and the value must be an object.

    Raises:
        RunError: not valid JSON, or not an object.
    """
    data = read_json(path)
    if data is not None and not isinstance(data, dict):
        raise RunError(f"{str(path)!r} holds {type(data).__name__}, not a JSON object")
    return data


def read_jsonl(path: Path, *, rank: int) -> list[dict[str, Any]]:
    """The events of one JSONL file, each with its ``rank`` (from the file name if missing).

    A cut last line and lines that do not parse as JSON objects are skipped with one warning.
    """
    text = read_text(path)
    if not text:
        return []
    events: list[dict[str, Any]] = []
    bad = 0
    loads = json.loads
    for line in whole_lines(text, path).splitlines():
        try:
            event = loads(line)
        except ValueError:
            bad += 1
            continue
        if type(event) is not dict:
            bad += 1
            continue
        if "rank" not in event:
            event["rank"] = rank
        events.append(event)
    if bad:
        warnings.warn(f"{path}: {bad} lines that are not JSON objects skipped", RunFileWarning, 2)
    return events


class MetricRow(NamedTuple):
    """One row of a metrics CSV, with the rank whose file it came from."""

    step: int
    split: str
    name: str
    value: float
    wall_time: float
    rank: int


@dataclass
class MetricColumns:
    """Metric rows held column by column (1M rows in a few lists, not a million objects)."""

    step: list[int] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    rank: list[int] = field(default_factory=list)

    def extend(self, other: MetricColumns) -> None:
        """Append the rows of ``other``."""
        for column in _COLUMNS:
            getattr(self, column).extend(getattr(other, column))

    def select(self, indices: Sequence[int]) -> MetricColumns:
        """The rows at ``indices``, in that order."""
        picked = MetricColumns()
        for column in _COLUMNS:
            values = getattr(self, column)
            getattr(picked, column).extend([values[i] for i in indices])
        return picked


_COLUMNS = ("step", "split", "name", "value", "wall_time", "rank")


def _fast_columns(body: str, rank: int) -> MetricColumns | None:
    """The columns of a body without quoted fields, in a few C-level passes over the text
    (a million rows in well under a second), or None if any row does not have five numbers."""
    if not body:
        return MetricColumns()
    lines = body.count("\n")
    fields = body.replace("\n", ",").split(",")
    fields.pop()  # the empty text after the last newline
    if len(fields) != 5 * lines:
        return None
    try:
        return MetricColumns(
            list(map(int, fields[0::5])),
            list(map(sys.intern, fields[1::5])),
            list(map(sys.intern, fields[2::5])),
            list(map(float, fields[3::5])),
            list(map(float, fields[4::5])),
            [rank] * lines,
        )
    except ValueError:
        return None


def _careful_columns(rows: list[list[str]], rank: int) -> tuple[MetricColumns, int, list[int]]:
    """Row by row: the rows that parse, how many did not (a repeated header not counted), and
    the place of each row kept among all the file's data rows."""
    out = MetricColumns()
    bad = 0
    positions: list[int] = []
    for position, row in enumerate(rows):
        try:
            step, split, name, value, wall = row
            parsed = (int(step), float(value), float(wall))
        except ValueError:
            bad += row != METRICS_HEADER
            continue
        positions.append(position)
        out.step.append(parsed[0])
        out.split.append(sys.intern(split))
        out.name.append(sys.intern(name))
        out.value.append(parsed[1])
        out.wall_time.append(parsed[2])
        out.rank.append(rank)
    return out, bad, positions


def read_metrics_csv(
    path: Path, *, rank: int, attempts: Sequence[Mapping[str, Any]] = ()
) -> MetricColumns:
    """The rows of one metrics CSV (``step,split,name,value,wall_time``), or none if absent.

    A cut last line and rows that do not parse are skipped with one warning. With ``attempts``
    (the records of the same rank's restart history), only the surviving history is kept: rows
    that a resume marker supersedes are left out (:func:`expmate.history.surviving_rows`).

    Raises:
        RunError: the file does not start with the metrics header.
    """
    text = read_text(path)
    if not text:
        return MetricColumns()
    text = whole_lines(text, path)
    if not text:
        return MetricColumns()
    header, _, body = text.partition("\n")
    if header.strip("\r") != ",".join(METRICS_HEADER):
        raise RunError(
            f"{str(path)!r} is not a metrics file: its header is {header!r}, "
            f"not {','.join(METRICS_HEADER)!r}"
        )
    # Rows without quotes (the common case: a split or name with a comma, quote or newline is
    # quoted) are split directly; the csv module reads the others, record by record.
    columns = None if '"' in body or "\r" in body else _fast_columns(body, rank)
    positions: Sequence[int] | None = None
    if columns is None:
        rows = list(csv.reader(io.StringIO(body, newline="")))
        columns, bad, positions = _careful_columns(rows, rank)
        if bad:
            warnings.warn(f"{path}: {bad} rows that do not parse skipped", RunFileWarning, 2)
    if resume_markers(attempts):
        columns = _surviving(columns, positions, attempts)
    return columns


def _surviving(
    columns: MetricColumns, positions: Sequence[int] | None, attempts: Sequence[Mapping[str, Any]]
) -> MetricColumns:
    """The rows of ``columns`` that no resume marker supersedes. The markers count every data
    row of the file, so a row that did not parse still holds its place (and is never
    superseded): ``positions`` gives the place of each parsed row (None: row i at place i)."""
    count = len(columns.step)
    places: list[tuple[int | None, int | None]]
    if positions is None:
        places = list(zip(columns.step, range(count), strict=True))
    else:
        total = positions[-1] + 1 if positions else 0
        places = [(None, None)] * total
        for i, place in enumerate(positions):
            places[place] = (columns.step[i], i)
    kept = [i for _, i in iter_surviving(places, attempts) if i is not None]
    return columns if len(kept) == count else columns.select(kept)
