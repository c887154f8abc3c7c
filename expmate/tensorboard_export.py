"""A run's metrics as TensorBoard event files, written with TensorBoard's own writer.

One TensorBoard run (a directory of event files) per expmate run: every metric series as a scalar
tag ``split/name`` (``split/name/rank{r}`` for a rank's own ``metrics_rank{r}.csv``) with its
steps and wall times, the best value of each metric in ``best.json`` as the one-point tag
``best/split/name``, and the config (flattened, ``training.lr``) as the run's hyperparameters for
the HParams tab, whose metric columns are those tags. TensorBoard stores scalars as 32-bit floats.

The ``tensorboard`` package is imported only here, and only when :func:`write_export` runs; it
needs neither TensorFlow nor torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expmate.run_files import number
from expmate.runs import Run, flatten_config

__all__ = [
    "Export",
    "ExportCounts",
    "Series",
    "hparams_of",
    "prepare_export",
    "series_of",
    "write_export",
]

# Keys that differ in every run and say nothing about it as a hyperparameter.
_NOT_HPARAMS = ("run_id", "run_dir")


@dataclass(frozen=True)
class ExportCounts:
    """What one export wrote: scalar tags, points, hyperparameters."""

    tags: int
    points: int
    hparams: int


@dataclass(frozen=True)
class Series:
    """One metric's values by step (the last value of a step logged twice), with wall times."""

    split: str
    name: str
    rank: int
    steps: list[int]
    values: list[float]
    wall_times: list[float]

    @property
    def tag(self) -> str:
        """``split/name``, or ``split/name/rank{r}`` for a rank's own file."""
        tag = f"{self.split}/{self.name}"
        return tag if self.rank == 0 else f"{tag}/rank{self.rank}"


def series_of(run: Run) -> list[Series]:
    """Every metric series of the run, rank 0's first, each sorted by step.

    Raises:
        RunError: a metric file of the run cannot be read.
    """
    columns = run.metrics.columns
    keys = sorted(set(zip(columns.rank, columns.split, columns.name, strict=True)))
    out = []
    for rank, split, name in keys:
        steps, values = run.metric(split, name, rank=rank)
        wall_times, _ = run.metric(split, name, x="time", rank=rank)
        out.append(Series(split, name, rank, [int(s) for s in steps], values, list(wall_times)))
    return out


def hparams_of(config: dict[str, Any] | None) -> dict[str, bool | int | float | str]:
    """The config, flattened, as TensorBoard hyperparameters: numbers, booleans and strings as
    they are, anything else (lists, null) as its JSON text; ``run_id`` and ``run_dir`` left out."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in flatten_config(config or {}).items():
        if key in _NOT_HPARAMS:
            continue
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            out[key] = json.dumps(value, default=str)
    return out


@dataclass(frozen=True)
class Export:
    """Everything one run's event files hold, read from the run before anything is written."""

    run_id: str
    start_time: float
    series: list[Series]
    bests: list[tuple[str, int, float, float]]
    hparams: dict[str, bool | int | float | str]

    @property
    def counts(self) -> ExportCounts:
        """Scalar tags, points and hyperparameters written."""
        points = sum(len(s.steps) for s in self.series) + len(self.bests)
        return ExportCounts(len(self.series) + len(self.bests), points, len(self.hparams))


def prepare_export(run: Run) -> Export:
    """Read what :func:`write_export` writes for ``run``.

    Raises:
        RunError: a file of the run cannot be read (a metrics file, ``best.json``,
            ``config.yaml``, ``summary.json``).
    """
    series = series_of(run)
    start = run.start_time or min((s.wall_times[0] for s in series), default=0.0)
    return Export(run.id, start, series, _best_points(run, series, start), hparams_of(run.config))


def write_export(export: Export, logdir: Path) -> ExportCounts:
    """Write ``export`` as an event file in ``logdir`` with TensorBoard's writer.

    Raises:
        OSError: ``logdir`` cannot be written.
    """
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(logdir))
    try:
        start = export.start_time
        session = hparams_pb(export.hparams, trial_id=export.run_id, start_time_secs=start)
        writer.add_event(Event(wall_time=start, step=0, summary=session))
        for one in export.series:
            for step, value, wall in zip(one.steps, one.values, one.wall_times, strict=True):
                writer.add_event(
                    Event(wall_time=wall, step=step, summary=scalar_pb(one.tag, value))
                )
        for tag, step, value, wall in export.bests:
            writer.add_event(Event(wall_time=wall, step=step, summary=scalar_pb(tag, value)))
    finally:
        writer.close()
    return export.counts


def _best_points(
    run: Run, series: list[Series], start: float
) -> list[tuple[str, int, float, float]]:
    """``(best/split/name, step, value, wall time)`` of every metric in ``best.json``."""
    out = []
    for one in series:
        entry = run.best.get(f"{one.split}_{one.name}") if one.rank == 0 else None
        if not isinstance(entry, dict):
            continue
        value, step = number(entry.get("value")), entry.get("step")
        if not isinstance(value, (int, float)) or not isinstance(step, int) or math.isnan(value):
            continue
        wall = one.wall_times[one.steps.index(step)] if step in one.steps else start
        out.append((f"best/{one.tag}", step, float(value), wall))
    return out
