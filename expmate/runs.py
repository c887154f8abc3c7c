"""Reading runs back: :func:`load_run`, :func:`load_runs` and :func:`runs_table`.

A :class:`Run` reads its files on first use of each attribute, so listing thousands of runs
touches only their ``summary.json``. Runs still being written, and runs killed mid-write, load:
a cut last line is skipped with one :class:`RunFileWarning`.

Example:
    >>> run = load_run("runs/exp1")  # doctest: +SKIP
    >>> steps, values = run.metric("val", "loss")  # doctest: +SKIP
    >>> run.status, run.best["val_loss"]  # doctest: +SKIP
    ('finished', {'value': 0.41, 'step': 5, 'mode': 'min'})
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, overload

from expmate.best import detect_mode
from expmate.history import attempts_name, metrics_name, read_attempts
from expmate.run_files import (
    MetricColumns,
    MetricRow,
    RunError,
    RunFileWarning,
    number,
    read_json_object,
    read_jsonl,
    read_metrics_csv,
    read_text,
)
from expmate.summary import FILE_NAME as SUMMARY_FILE
from expmate.summary import observed_status
from expmate.sweep_grid import SWEEP_INDEX

# Any of these makes a directory a run directory.
RUN_FILES = ("summary.json", "events.jsonl", "metrics.csv", "exp.log", "best.json", "run.json")
_RANK_FILE = re.compile(r"^(events|metrics)_rank(\d+)\.(jsonl|csv)$")
_GLOB_CHARS = re.compile(r"[*?\[]")

PathLike = str | os.PathLike[str]


def is_run_dir(path: PathLike) -> bool:
    """Whether ``path`` is a directory holding at least one of the files a logger writes."""
    return any(os.path.isfile(os.path.join(path, name)) for name in RUN_FILES)


class MetricRows(Sequence[MetricRow]):
    """The metric rows of a run: a sequence of :class:`MetricRow`, stored column by column.

    Convert with :meth:`to_pandas` or :meth:`to_polars` when those libraries are installed
    (neither is needed otherwise).
    """

    def __init__(self, columns: MetricColumns) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns.step)

    @overload
    def __getitem__(self, index: int) -> MetricRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[MetricRow]: ...

    def __getitem__(self, index: int | slice) -> MetricRow | list[MetricRow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        c = self.columns
        return MetricRow(
            c.step[index], c.split[index], c.name[index], c.value[index], c.wall_time[index],
            c.rank[index],
        )  # fmt: skip

    def __iter__(self) -> Iterator[MetricRow]:
        c = self.columns
        for row in zip(c.step, c.split, c.name, c.value, c.wall_time, c.rank, strict=True):
            yield MetricRow(*row)

    def as_dict(self) -> dict[str, list[Any]]:
        """The columns ``step, split, name, value, wall_time, rank`` as lists."""
        c = self.columns
        return {
            "step": c.step,
            "split": c.split,
            "name": c.name,
            "value": c.value,
            "wall_time": c.wall_time,
            "rank": c.rank,
        }

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` with the columns of :meth:`as_dict` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.as_dict())

    def to_polars(self) -> Any:
        """A ``polars.DataFrame`` with the columns of :meth:`as_dict` (needs polars)."""
        import polars as pl

        return pl.DataFrame(self.as_dict())

    def __repr__(self) -> str:
        return f"<MetricRows: {len(self)} rows>"


def metric_rows(run_dir: Path, ranks: Sequence[int]) -> MetricRows:
    """Every metric row of the run: ``metrics.csv`` (rank 0), then ``metrics_rank{r}.csv``.

    The one place where rows are read, so that every reader (``Run.metrics``, ``Run.metric``,
    the command line) sees the same history: the surviving one. Rows that a resume marker
    supersedes (``logger.resume(step)``: every earlier row of that rank at or after the resume
    step) are left out; otherwise rows are kept as written, so a step logged again by a run
    reopened without ``resume()`` appears twice (``Run.metric`` keeps the last value of each step).
    """
    columns = MetricColumns()
    for rank in [0, *(r for r in ranks if r > 0)]:
        attempts = read_attempts(run_dir / attempts_name(rank))
        path = run_dir / metrics_name(rank)
        columns.extend(read_metrics_csv(path, rank=rank, attempts=attempts))
    return MetricRows(columns)


def flatten_config(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"training": {"lr": 0.1}}`` -> ``{"training.lr": 0.1}``."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten_config(value, name))
        else:
            out[name] = value
    return out


def _metric_summary_from_rows(rows: MetricRows, best: dict[str, Any]) -> dict[str, Any]:
    """Last and best of every rank-0 metric, computed from the rows (runs without a summary):
    the best from ``best.json``, else from the values in the direction the name says."""
    c = rows.columns
    rank0 = c.rank.count(0)  # metrics.csv's rows come first
    keys = list(zip(c.split[:rank0], c.name[:rank0], strict=True))
    last_index = dict(zip(keys, range(rank0), strict=True))  # C speed: the last row wins
    out: dict[str, dict[str, Any]] = {}
    for (split, name), i in sorted(last_index.items(), key=lambda item: keys.index(item[0])):
        entry = {"split": split, "name": name, "last": c.value[i], "last_step": c.step[i]}
        recorded = best.get(f"{split}_{name}")
        if isinstance(recorded, dict):
            value, step, mode = recorded.get("value"), recorded.get("step"), recorded.get("mode")
        else:
            value, step, mode = _best_of_rows(c, keys, (split, name), detect_mode(name))
        entry.update(best=value, best_step=step, mode=mode if value is not None else None)
        out[f"{split}/{name}"] = entry
    return out


def _best_of_rows(
    c: MetricColumns, keys: list[tuple[str, str]], key: tuple[str, str], mode: str | None
) -> tuple[float | None, int | None, str | None]:
    """(best value, its step, mode) of one metric from its finite values; NaN never wins."""
    if mode is None:
        return None, None, None
    pairs = [
        (v, c.step[i]) for i, (k, v) in enumerate(zip(keys, c.value, strict=False)) if k == key
    ]
    finite = [p for p in pairs if math.isfinite(p[0])]
    if not finite:
        return None, None, None
    pick = min if mode == "min" else max
    value = pick(p[0] for p in finite)
    step = next(s for v, s in finite if v == value)  # the first step that reached it
    return value, step, mode


_ENTRY_FIELDS = ("split", "name", "last", "last_step", "best", "best_step", "mode")


class Run:
    """One run directory, read on demand. Create it with :func:`load_run`.

    Attributes read lazily (each file once): :attr:`summary`, :attr:`best`, :attr:`config`,
    :attr:`provenance` (``run.json``), :attr:`metrics`, :attr:`events`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<Run {self.id!r} at {str(self.path)!r}>"

    # ------------------------------------------------------------------ files

    @cached_property
    def summary(self) -> dict[str, Any] | None:
        """``summary.json`` as written (None for runs written before it existed)."""
        return read_json_object(self.path / SUMMARY_FILE)

    @cached_property
    def best(self) -> dict[str, Any]:
        """``best.json``: ``{"val_loss": {"value", "step", "mode"}, ...}`` (empty if absent)."""
        return read_json_object(self.path / "best.json") or {}

    @cached_property
    def provenance(self) -> dict[str, Any] | None:
        """``run.json`` (command, versions, ranks and hosts, git), or None if absent."""
        return read_json_object(self.path / "run.json")

    @cached_property
    def config(self) -> dict[str, Any] | None:
        """``config.yaml`` as plain data, or None if the run has none.

        Raises:
            RunError: the file is not valid YAML.
        """
        text = read_text(self.path / "config.yaml")
        if text is None:
            return None
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RunError(
                f"{str(self.path / 'config.yaml')!r} is not valid YAML ({exc})"
            ) from None
        return data if isinstance(data, dict) else {"value": data}

    @cached_property
    def ranks(self) -> list[int]:
        """The ranks that left files in the directory (``[0]`` for a single process)."""
        found = {0} if (self.path / "events.jsonl").exists() else set()
        for entry in os.scandir(self.path):
            match = _RANK_FILE.match(entry.name)
            if match:
                found.add(int(match.group(2)))
        return sorted(found) or [0]

    @cached_property
    def metrics(self) -> MetricRows:
        """Every metric row, rank 0's first, then those of other ranks' own files."""
        return metric_rows(self.path, self.ranks)

    @cached_property
    def events(self) -> list[dict[str, Any]]:
        """The events of every rank, ordered by time; each has its ``rank``."""
        merged: list[dict[str, Any]] = []
        for rank in self.ranks:
            name = "events.jsonl" if rank == 0 else f"events_rank{rank}.jsonl"
            merged.extend(read_jsonl(self.path / name, rank=rank))
        merged.sort(key=_event_time)
        return merged

    # ------------------------------------------------------------------ what the run is

    @cached_property
    def id(self) -> str:
        """The run id (from ``summary.json``, ``run.json``, the first event, else the
        directory name)."""
        found = self._recorded("run_id", str)
        return found or _first_run_id(self.path / "events.jsonl") or self.path.name

    def _recorded(self, key: str, kind: type | tuple[type, ...]) -> Any:
        """``key`` from ``summary.json``, else from ``run.json`` (read only if needed), or None."""
        for name in ("summary", "provenance"):
            record = getattr(self, name)
            if record and isinstance(record.get(key), kind) and not isinstance(record[key], bool):
                return record[key]
        return None

    def status_at(self, now: float) -> str:
        """The status as seen at ``now``: ``running``, ``finished``, ``failed``,
        ``interrupted``, ``killed`` (no heartbeat for a few flush intervals) or ``unknown``
        (no ``summary.json``)."""
        if self.summary is None:
            return "unknown"
        return observed_status(self.summary, now)

    @property
    def status(self) -> str:
        """:meth:`status_at` now."""
        return self.status_at(time.time())

    @property
    def start_time(self) -> float | None:
        """Unix time of the start (summary, else run.json, else the first event or row)."""
        start = self._recorded("start_time", (int, float))
        if start is not None:
            return float(start)
        times = self._file_times()
        return times[0] if times else None

    @property
    def end_time(self) -> float | None:
        """Unix time of the end; for a run without a recorded end, its last sign of life."""
        summary = self.summary
        if summary is not None:
            for key in ("end_time", "heartbeat"):
                if isinstance(summary.get(key), (int, float)):
                    return float(summary[key])
        times = self._file_times()
        return times[1] if times else None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (or to the last heartbeat of a run without an end)."""
        start, end = self.start_time, self.end_time
        return None if start is None or end is None else max(0.0, end - start)

    @property
    def world_size(self) -> int:
        """Processes in the job (summary, run.json, else the ranks that left files)."""
        world = self._recorded("world_size", int)
        return int(world) if world is not None else len(self.ranks)

    @property
    def last_step(self) -> int | None:
        """The largest step of any metric's latest value."""
        steps = [m["last_step"] for m in self.metric_summary.values() if m["last_step"] is not None]
        return max(steps) if steps else None

    def _file_times(self) -> tuple[float, float] | None:
        """(first, last) timestamps of the events and metric rows, for runs without a summary."""
        times = [e["timestamp"] for e in self.events if isinstance(e.get("timestamp"), float)]
        times += self.metrics.columns.wall_time
        return (min(times), max(times)) if times else None

    # ------------------------------------------------------------------ metrics

    @cached_property
    def metric_summary(self) -> dict[str, dict[str, Any]]:
        """``{"val/loss": {"split", "name", "last", "last_step", "best", "best_step", "mode"}}``
        for every metric of rank 0: from ``summary.json``, else computed from the rows and
        ``best.json``. Non-finite values are floats (``nan``), not their JSON spelling."""
        summary = self.summary
        if summary is None or not isinstance(summary.get("metrics"), dict):
            return _metric_summary_from_rows(self.metrics, self.best)
        out = {}
        for key, entry in summary["metrics"].items():
            if isinstance(entry, dict):  # this run's own parsed copy: completed in place
                if len(entry) != len(_ENTRY_FIELDS):  # expmate writes all of them
                    for field in _ENTRY_FIELDS:
                        entry.setdefault(field, None)
                if type(entry["last"]) is str:  # the only field spelled "NaN" when not finite
                    entry["last"] = number(entry["last"])
                out[key] = entry
        return out

    def metric_names(self) -> list[str]:
        """``split/name`` of every metric in the rows, sorted."""
        c = self.metrics.columns
        return sorted(f"{s}/{n}" for s, n in set(zip(c.split, c.name, strict=True)))

    def metric(
        self, split: str, name: str, *, x: str = "step", rank: int = 0
    ) -> tuple[Sequence[float], list[float]]:
        """``(steps, values)`` of one metric, by step; the last value of a step logged twice wins.

        Both are lists: steps of ints, values of floats (wall times of floats with ``x="time"``).

        Args:
            split: ``train``, ``val``, ...
            name: the metric name.
            x: ``"step"`` for the steps, ``"time"`` for the wall times (Unix seconds) of the
                same values, for plotting against time.
            rank: 0 for ``metrics.csv``; another rank for its own ``metrics_rank{r}.csv``.

        Raises:
            RunError: the run has no such metric (the message lists the ones it has).
            ValueError: ``x`` is neither ``"step"`` nor ``"time"``.
        """
        if x not in ("step", "time"):
            raise ValueError(f"x must be 'step' or 'time', not {x!r}")
        c = self.metrics.columns
        by_step: dict[int, tuple[float, float]] = {}
        for step, s, n, value, wall, r in zip(
            c.step, c.split, c.name, c.value, c.wall_time, c.rank, strict=True
        ):
            if n == name and s == split and r == rank:
                by_step[step] = (value, wall)
        if not by_step:
            have = ", ".join(self.metric_names()) or "none"
            where = "" if rank == 0 else f" on rank {rank}"
            raise RunError(f"run {self.id!r} has no metric {split}/{name}{where}; it has: {have}")
        steps = sorted(by_step)
        values = [by_step[s][0] for s in steps]
        if x == "time":
            return [by_step[s][1] for s in steps], values
        return list(steps), values


def _first_run_id(path: Path) -> str | None:
    """The ``run_id`` of the first event of a JSONL file, if it has one."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            event = json.loads(handle.readline())
    except (OSError, ValueError):
        return None
    run_id = event.get("run_id") if isinstance(event, dict) else None
    return run_id if isinstance(run_id, str) else None


def _event_time(event: dict[str, Any]) -> float:
    stamp = event.get("timestamp")
    return float(stamp) if isinstance(stamp, (int, float)) else -math.inf


def load_run(run_dir: PathLike) -> Run:
    """The run in ``run_dir``; its files are read when first used.

    Raises:
        TypeError: ``run_dir`` is not a path.
        RunError: ``run_dir`` does not exist or holds none of a run's files.
    """
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"run_dir must be a path, not {run_dir!r}")
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"no run directory at {str(path)!r}")
    if not is_run_dir(path):
        raise RunError(
            f"{str(path)!r} is not a run directory (no summary.json, events.jsonl or metrics.csv)"
        )
    return Run(path)


def find_runs(root: PathLike) -> list[Path]:
    """Run directories at or below ``root`` (not descending into runs), sorted by path."""
    if is_run_dir(root):
        return [Path(root)]
    found: list[str] = []
    stack = [os.fspath(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if is_run_dir(entry.path):
                found.append(entry.path)
            else:
                stack.append(entry.path)
    return [Path(path) for path in sorted(found)]


def load_runs(paths_or_glob: PathLike | Iterable[PathLike]) -> list[Run]:
    """The runs named by paths or glob patterns: a run directory, a directory of runs (searched
    below), or a pattern such as ``"runs/lr_*"``. Each run once, in the order found.

    Raises:
        TypeError: not a path, a pattern or an iterable of them.
        RunError: a path that does not exist, a pattern that matches nothing, or a directory
            without runs.
    """
    items = [paths_or_glob] if isinstance(paths_or_glob, (str, os.PathLike)) else paths_or_glob
    runs: list[Run] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"expected a path or a glob pattern, not {item!r}")
        for path in _expand(os.fspath(item)):
            key = os.path.abspath(path)
            if key not in seen:
                seen.add(key)
                runs.append(Run(path))
    return runs


def _expand(item: str) -> list[Path]:
    """The run directories one argument names; a sweep's index names the runs of its sweep."""
    if os.path.basename(item) == SWEEP_INDEX and os.path.isfile(item):
        paths = [os.path.dirname(item) or "."]  # `SWEEP_DIR/*` names the index too
    elif os.path.exists(item):
        paths = [item]
    elif _GLOB_CHARS.search(item):
        paths = sorted(glob.glob(item))
        if not paths:
            raise RunError(f"no path matches {item!r}")
    else:
        raise RunError(f"no run directory at {item!r}")
    runs = [run for path in paths if os.path.isdir(path) for run in find_runs(path)]
    if not runs:
        raise RunError(f"no run directories at or under {item!r}")
    return runs


RUN_COLUMNS = ("id", "status", "start_time", "end_time", "duration", "world_size", "last_step")


def table_rows(runs: Iterable[Run], *, now: float | None = None) -> list[dict[str, Any]]:
    """One dict per run: :data:`RUN_COLUMNS`, the config flattened (``training.lr``; a key equal
    to a run column gets a ``config.`` prefix), and ``<split/name>.best`` / ``.last``."""
    now = time.time() if now is None else now
    out = []
    for run in runs:
        row: dict[str, Any] = {
            "id": run.id,
            "status": run.status_at(now),
            "start_time": run.start_time,
            "end_time": run.end_time,
            "duration": run.duration,
            "world_size": run.world_size,
            "last_step": run.last_step,
        }
        for key, value in flatten_config(run.config or {}).items():
            row[f"config.{key}" if key in RUN_COLUMNS else key] = value
        for key, entry in run.metric_summary.items():
            row[f"{key}.best"] = entry["best"]
            row[f"{key}.last"] = entry["last"]
        out.append(row)
    return out


def runs_table(
    runs: PathLike | Iterable[PathLike] | Iterable[Run], *, frame: str | None = "pandas"
) -> Any:
    """One row per run (see :func:`table_rows` for the columns).

    Args:
        runs: :class:`Run` objects, or paths and patterns for :func:`load_runs`.
        frame: ``"pandas"`` (a ``DataFrame``), ``"polars"``, or None for a list of dicts.

    Raises:
        ValueError: an unknown ``frame``.
        RunError: as :func:`load_runs`.
    """
    if frame not in ("pandas", "polars", None):
        raise ValueError(f"frame must be 'pandas', 'polars' or None, not {frame!r}")
    items = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
    loaded: list[Run] = []
    for item in items:
        loaded += [item] if isinstance(item, Run) else load_runs(item)
    rows = table_rows(loaded)
    if frame is None:
        return rows
    if frame == "polars":
        import polars as pl

        return pl.DataFrame(rows, infer_schema_length=None, strict=False)
    import pandas as pd

    return pd.DataFrame(rows)


__all__ = [
    "MetricRow",
    "MetricRows",
    "Run",
    "RunError",
    "RunFileWarning",
    "find_runs",
    "flatten_config",
    "is_run_dir",
    "load_run",
    "load_runs",
    "metric_rows",
    "runs_table",
]
