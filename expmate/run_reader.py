"""One run directory read back on demand: :class:`Run`.

Each attribute reads its file on first use, so listing thousands of runs touches only their
``summary.json``. Create runs with :func:`expmate.runs.load_run` or :func:`expmate.runs.load_runs`.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from expmate.rank_files import events_name
from expmate.run_files import RunError, number, read_json_object, read_jsonl, read_text
from expmate.run_metrics import MetricRows, metric_rows, metric_summary_from_rows
from expmate.summary import FILE_NAME as SUMMARY_FILE
from expmate.summary import observed_status

_RANK_FILE = re.compile(r"^(events|metrics)_rank(\d+)\.(jsonl|csv)$")
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
            merged.extend(read_jsonl(self.path / events_name(rank), rank=rank))
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
            return metric_summary_from_rows(self.metrics, self.best)
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
