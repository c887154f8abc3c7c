"""The metric rows of a run: :class:`MetricRows`, the one reader of them, and their summary.

Every reader of a run's metrics (``Run.metrics``, ``Run.metric``, the command line) goes through
:func:`metric_rows`, so that they all see the same, surviving history.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from expmate.best import detect_mode
from expmate.history import read_attempts
from expmate.rank_files import attempts_name, metrics_name
from expmate.run_files import MetricColumns, MetricRow, read_metrics_csv


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


def metric_summary_from_rows(rows: MetricRows, best: dict[str, Any]) -> dict[str, Any]:
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
