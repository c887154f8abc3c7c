"""What a run's events say: time per stage, slowest timers across ranks, warnings and errors,
checkpoint events. Pure functions over the event dicts of :attr:`expmate.runs.Run.events`.

Example:
    >>> run = load_run("runs/exp1")  # doctest: +SKIP
    >>> [s.path for s in stage_totals(run.events)]  # doctest: +SKIP
    ['epoch', 'epoch/train', 'epoch/validation']
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from expmate.run_files import number

PROBLEM_LEVELS = ("WARNING", "ERROR", "CRITICAL")


def _seconds(value: Any) -> float | None:
    value = number(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass
class RankTotals:
    """Seconds counted per rank: how many measurements and their total."""

    counts: dict[int, int] = field(default_factory=dict)
    totals: dict[int, float] = field(default_factory=dict)

    def add(self, rank: int, seconds: float) -> None:
        """Count one measurement of ``rank``."""
        self.counts[rank] = self.counts.get(rank, 0) + 1
        self.totals[rank] = self.totals.get(rank, 0.0) + seconds

    @property
    def slowest_rank(self) -> int:
        """The rank with the largest total (the lowest such rank on a tie)."""
        return max(self.totals, key=lambda r: (self.totals[r], -r))

    @property
    def spread(self) -> float | None:
        """Largest / smallest per-rank total (1.0: balanced); None with one rank."""
        if len(self.totals) < 2:
            return None
        low = min(self.totals.values())
        return math.inf if low == 0 else max(self.totals.values()) / low


@dataclass
class StageTotal(RankTotals):
    """Time spent in one stage path: per rank, the number of blocks and their total seconds."""

    path: str = ""
    failed: int = 0

    @property
    def depth(self) -> int:
        """0 for a top-level stage, 1 for ``epoch/train``, ..."""
        return self.path.count("/")

    @property
    def first_rank(self) -> int:
        """The lowest rank that ran the stage (rank 0 normally)."""
        return min(self.totals)

    @property
    def total(self) -> float:
        """Seconds on :attr:`first_rank`."""
        return self.totals[self.first_rank]

    @property
    def count(self) -> int:
        """Blocks on :attr:`first_rank`."""
        return self.counts[self.first_rank]


def stage_totals(events: Iterable[dict[str, Any]]) -> list[StageTotal]:
    """The stages in tree order (each parent before its children, siblings in order of first
    start), from their END events."""
    found: dict[str, StageTotal] = {}
    order: dict[str, int] = {}
    for event in events:
        stage_event = event.get("stage_event")
        path = event.get("stage")
        if not isinstance(path, str):
            continue
        if stage_event == "start":
            order.setdefault(path, len(order))
        if stage_event != "end":
            continue
        elapsed = _seconds(event.get("elapsed"))
        if elapsed is None:
            continue
        entry = found.setdefault(path, StageTotal(path=path))
        entry.add(int(event.get("rank", 0)), elapsed)
        entry.failed += event.get("status") == "error"
    for path in found:
        order.setdefault(path, len(order))

    def tree_key(path: str) -> list[int]:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return [order.get(p, len(order)) for p in prefixes]

    return [found[p] for p in sorted(found, key=tree_key)]


@dataclass
class TimerStat(RankTotals):
    """One timer across ranks: per rank, count, total and largest single time."""

    name: str = ""
    longest: dict[int, float] = field(default_factory=dict)

    def add(self, rank: int, seconds: float) -> None:
        """Count one measurement of ``rank``."""
        super().add(rank, seconds)
        self.longest[rank] = max(self.longest.get(rank, 0.0), seconds)

    @property
    def total(self) -> float:
        """Total seconds on the slowest rank."""
        return self.totals[self.slowest_rank]

    @property
    def count(self) -> int:
        """Measurements on the slowest rank."""
        return self.counts[self.slowest_rank]


def timer_stats(events: Iterable[dict[str, Any]]) -> list[TimerStat]:
    """Every timer, slowest total first.

    A timer event of ``timer()`` counts for the rank that wrote it; one of
    ``expmate.torch.mp.timer_across_ranks`` (written by rank 0 with ``elapsed_max``/``max_rank``
    and ``elapsed_min``/``min_rank``) counts for the slowest and the fastest rank it names.
    """
    found: dict[str, TimerStat] = {}
    for event in events:
        name = event.get("timer")
        if not isinstance(name, str):
            continue
        stat = found.setdefault(name, TimerStat(name=name))
        slowest = _seconds(event.get("elapsed_max"))
        if slowest is not None and isinstance(event.get("max_rank"), int):
            stat.add(event["max_rank"], slowest)
            fastest = _seconds(event.get("elapsed_min"))
            if fastest is not None and event.get("min_rank") != event["max_rank"]:
                stat.add(int(event["min_rank"]), fastest)
            continue
        elapsed = _seconds(event.get("elapsed"))
        if elapsed is not None:
            stat.add(int(event.get("rank", 0)), elapsed)
    return sorted(found.values(), key=lambda s: -s.total)


def problems(events: Iterable[dict[str, Any]]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Counts of WARNING, ERROR and CRITICAL events (every rank) and those events in time order."""
    counts = dict.fromkeys(PROBLEM_LEVELS, 0)
    found = []
    for event in events:
        level = event.get("level")
        if level in counts:
            counts[level] += 1
            found.append(event)
    return counts, found


def checkpoint_events(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events that carry a ``checkpoint`` field (saved, deleted, loaded), in time order."""
    return [e for e in events if "checkpoint" in e]
