"""The job-wide maximum of the ranks' system samples, carried by the reduction's collectives.

When a logger reduces metrics across ranks, every rank's :class:`SystemColumns` adds the same
ride-along columns (:class:`expmate.reduction.Columns`, op ``max``) at construction: one per
quantity of :data:`NAMES`, the newest sample's ``wall_time`` and a sample counter. After each
sample a rank stores its latest values there; every collective the reduction makes anyway
carries them. When the maximum counter over ranks has grown since the last sync, rank 0 records
the maxima as rows of split ``system`` in ``metrics.csv``, with the step of the logger's latest
other metric (the step of that sync) and the ``wall_time`` of the newest sample combined.

The columns cannot depend on what a rank samples (GPUs per rank differ, CUDA may be set up
after the logger, psutil may be missing), so they are the same fixed list everywhere: a
per-device figure (``gpu{i}_util_percent``) travels as its maximum over the rank's devices
(``gpu_util_percent``), and a quantity a rank lacks as :data:`ABSENT`, below every real value
(all are non-negative). A maximum that is still :data:`ABSENT` is written as no row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from expmate.metric_store import MetricStore
from expmate.reduction import Columns

SPLIT = "system"

NAMES = (
    "cpu_percent",
    "rss_mib",
    "gpu_util_percent",
    "gpu_memory_used_mib",
    "gpu_allocated_mib",
    "gpu_reserved_mib",
)
"""The quantities written to ``metrics.csv``, each the maximum over ranks (and GPUs)."""

ABSENT = -1.0
"""The value a rank sends for a quantity it did not sample (Columns carry finite numbers)."""

WALL = "wall_time"
SAMPLES = "samples"

AddColumns = Callable[[str, Mapping[str, str], Callable[[dict[str, float]], None]], Columns]


def job_values(sample: list[tuple[str, float]]) -> dict[str, float]:
    """One rank's sample as the values of :data:`NAMES`: GPU figures folded over its devices.

    Example:
        >>> job_values([("rss_mib", 20.5), ("gpu0_util_percent", 7.0), ("gpu1_util_percent", 9.0)])
        ... # doctest: +NORMALIZE_WHITESPACE
        {'cpu_percent': -1.0, 'rss_mib': 20.5, 'gpu_util_percent': 9.0,
         'gpu_memory_used_mib': -1.0, 'gpu_allocated_mib': -1.0, 'gpu_reserved_mib': -1.0}
    """
    values = dict.fromkeys(NAMES, ABSENT)
    for name, value in sample:
        if name.startswith("gpu"):
            name = "gpu_" + name.partition("_")[2]
        if name in values and math.isfinite(value) and value >= 0.0:
            values[name] = max(values[name], value)
    return values


class SystemColumns:
    """This rank's side of the job-wide maximum: its latest sample out, the maxima in.

    Args:
        add_columns: the logger's :meth:`expmate.metric_router.MetricRouter.add_columns` (or a
            reduction's ``add_columns`` wrapped the same way); called once, here.
        store: where rank 0 records the maxima (the logger's store: ``metrics.csv``).
        write: True on rank 0 only.
        latest_step: the step to give a row of maxima (the logger's latest other metric).
    """

    def __init__(
        self,
        add_columns: AddColumns,
        store: MetricStore,
        *,
        write: bool,
        latest_step: Callable[[], int],
    ) -> None:
        self._store = store
        self._write = write
        self._latest_step = latest_step
        self._samples = 0
        self._written = 0.0  # the highest counter already recorded
        ops = dict.fromkeys((*NAMES, WALL, SAMPLES), "max")
        self._columns = add_columns(SPLIT, ops, self._reduced)

    def update(self, sample: list[tuple[str, float]], wall: float) -> None:
        """This rank's latest sample, sent from the next collective on (any thread)."""
        self._samples += 1
        values = job_values(sample)
        values[WALL] = wall
        values[SAMPLES] = float(self._samples)
        self._columns.update(values)

    def _reduced(self, values: dict[str, float]) -> None:
        """After a sync (every rank): rank 0 records the maxima of samples not recorded yet."""
        count = values[SAMPLES]
        if count <= self._written:
            return
        self._written = count
        if not self._write:
            return
        step = self._latest_step()
        wall = values[WALL]
        for name in NAMES:
            value = values[name]
            if value != ABSENT:
                self._store.record(step, SPLIT, name, value, False, None, wall)
