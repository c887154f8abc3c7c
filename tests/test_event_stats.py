"""Stage totals, timers across ranks, warnings and checkpoint events from event dicts."""

from __future__ import annotations

from typing import Any

from expmate.event_stats import checkpoint_events, problems, stage_totals, timer_stats


def _end(path: str, elapsed: Any, rank: int = 0, status: str = "ok") -> dict[str, Any]:
    return {"stage": path, "stage_event": "end", "elapsed": elapsed, "rank": rank, "status": status}


def test_stage_tree_order_and_totals_per_rank() -> None:
    """Parents before children, siblings in order of first start; per-rank totals, failures."""
    events = [
        {"stage": "epoch", "stage_event": "start", "rank": 0},
        {"stage": "epoch/train", "stage_event": "start", "rank": 0},
        _end("epoch/train", 1.0),
        {"stage": "epoch/val", "stage_event": "start", "rank": 0},
        _end("epoch/val", 0.5, status="error"),
        _end("epoch", 2.0),
        _end("epoch", 3.0, rank=1),
        _end("epoch", "NaN", rank=1),  # a non-finite elapsed is not counted
        {"stage": "setup", "stage_event": "start", "rank": 0},
        _end("setup", 0.25),
    ]
    stages = stage_totals(events)
    assert [(s.path, s.depth, s.count, s.total, s.failed) for s in stages] == [
        ("epoch", 0, 1, 2.0, 0),
        ("epoch/train", 1, 1, 1.0, 0),
        ("epoch/val", 1, 1, 0.5, 1),
        ("setup", 0, 1, 0.25, 0),
    ]
    assert (stages[0].slowest_rank, stages[0].totals) == (1, {0: 2.0, 1: 3.0})


def test_timers_per_rank_and_across_ranks() -> None:
    """Plain timers count for the rank that logged them; timer_across_ranks events for the
    slowest and fastest rank they name. Slowest total first; spread is max/min."""
    events = [
        {"timer": "step", "elapsed": 0.1, "rank": 0},
        {"timer": "step", "elapsed": 0.3, "rank": 1},
        {"timer": "step", "elapsed": 0.5, "rank": 1},
        {"timer": "sync", "elapsed_max": 2.0, "max_rank": 3, "elapsed_min": 0.5, "min_rank": 0},
        {"timer": "solo", "elapsed": 0.01, "rank": 0},
    ]
    stats = timer_stats(events)
    assert [s.name for s in stats] == ["sync", "step", "solo"]
    sync, step, solo = stats
    assert (sync.slowest_rank, sync.total, sync.spread) == (3, 2.0, 4.0)
    assert (step.slowest_rank, step.count, step.total, step.longest[1]) == (1, 2, 0.8, 0.5)
    assert step.spread == 0.8 / 0.1 and solo.spread is None


def test_problems_and_checkpoints() -> None:
    """Counts per level over every rank; events with a checkpoint field, in order."""
    events = [
        {"level": "WARNING", "message": "w", "rank": 1},
        {"level": "INFO", "message": "saved", "checkpoint": "a.pt"},
        {"level": "ERROR", "message": "e", "rank": 0},
        {"level": "CRITICAL", "message": "c", "rank": 0},
    ]
    counts, found = problems(events)
    assert counts == {"WARNING": 1, "ERROR": 1, "CRITICAL": 1}
    assert [e["message"] for e in found] == ["w", "e", "c"]
    assert checkpoint_events(events) == [events[1]]
