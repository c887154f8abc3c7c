"""One row per run: :func:`runs_table` (a pandas or polars DataFrame, or dicts) and its columns."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from expmate.config_keys import dotted_leaves
from expmate.run_reader import Run
from expmate.run_search import PathLike, load_runs

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


def flatten_config(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"training": {"lr": 0.1}}`` -> ``{"training.lr": 0.1}``."""
    return dotted_leaves(tree, prefix)
