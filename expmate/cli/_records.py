"""What ``ls`` and ``compare`` show of a run, as a plain dict, and how they sort such records."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from expmate.cli import CliError
from expmate.cli._select import full_key

if TYPE_CHECKING:
    from expmate.runs import Run

RUN_SORTS = ("start", "id", "status", "duration", "steps")
_SORT_FIELDS = {"start": "start_time", "steps": "last_step"}
_NEWEST_FIRST = ("start", "duration", "steps")


def record(run: Run, now: float, *, config: bool) -> dict[str, Any]:
    """id, path, status (as seen at ``now``), start, duration, last step and the metric
    summary of ``run`` (its ``summary.json``); with ``config``, the flattened config too.

    Raises:
        RunError: a file of the run does not parse.
    """
    from expmate.runs import flatten_config

    out: dict[str, Any] = {
        "id": run.id,
        "path": str(run.path),
        "status": run.status_at(now),
        "start_time": run.start_time,
        "duration": run.duration,
        "last_step": run.last_step,
        "metrics": run.metric_summary,
    }
    if config:
        out["config"] = flatten_config(run.config or {})
    return out


def best_of(rec: dict[str, Any], metric: str) -> float | None:
    """The best value of ``metric`` in a record, or None (absent, untracked or NaN)."""
    entry = rec["metrics"].get(metric)
    best = None if entry is None else entry.get("best")
    return best if isinstance(best, (int, float)) and not math.isnan(best) else None


def known_metrics(records: list[dict[str, Any]]) -> str:
    """``metrics with a best value: val/accuracy, val/loss`` for an error message."""
    names = sorted({k for r in records for k, e in r["metrics"].items() if e.get("mode")})
    return "metrics with a best value: " + (", ".join(names) if names else "none")


def sort_records(records: list[dict[str, Any]], key: str) -> None:
    """Sort in place by a run field (start, duration and steps: largest first) or by the best
    value of a metric in its own direction; records without the key go last.

    Raises:
        CliError: ``key`` is a metric no record has a best value of (exit 1), or not a
            SPLIT/NAME (exit 2).
    """
    if key in RUN_SORTS:
        field = _SORT_FIELDS.get(key, key)
        present = [r for r in records if r[field] is not None]
        present.sort(key=lambda r: r[field], reverse=key in _NEWEST_FIRST)
        records[:] = present + [r for r in records if r[field] is None]
        return
    metric = full_key(key)
    ranked = [r for r in records if best_of(r, metric) is not None]
    if not ranked:
        raise CliError(f"no run has a best value of {metric!r}; {known_metrics(records)}")
    mode = ranked[0]["metrics"][metric]["mode"]
    ranked.sort(key=lambda r: best_of(r, metric) or 0.0, reverse=mode == "max")
    records[:] = ranked + [r for r in records if best_of(r, metric) is None]


def metric_columns(
    records: list[dict[str, Any]], chosen: list[str] | None, *, tracked_only: bool
) -> list[tuple[str, str | None]]:
    """(metric, mode) of the metric columns: those asked for, else every metric (with
    ``tracked_only``, every metric with a best value), sorted.

    Raises:
        CliError: an asked-for metric no record has.
    """
    modes: dict[str, str | None] = {}
    for rec in records:
        for key, entry in rec["metrics"].items():
            if (entry.get("mode") or not tracked_only) and modes.get(key) is None:
                modes[key] = entry.get("mode")
    if chosen is None:
        return sorted(modes.items())
    out = []
    for text in chosen:
        key = full_key(text)
        if key not in modes:
            have = ", ".join(sorted(modes)) or "none"
            raise CliError(f"no run has metric {key!r}; metrics: {have}")
        out.append((key, modes[key]))
    return out


def mode_arrow(mode: str | None) -> str:
    """``↓`` for min, ``↑`` for max, nothing for an untracked metric."""
    return {"min": " ↓", "max": " ↑"}.get(mode or "", "")
