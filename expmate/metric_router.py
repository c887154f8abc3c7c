"""Where each logged metric value goes: straight to this rank's store, or through the reduction.

The router validates a ``log_metric`` call, then either records the value in the rank's
:class:`~expmate.metric_store.MetricStore` (no reduction) or hands it to the logger's
:class:`~expmate.reduction.Reduction`, whose ``emit`` brings the reduced value back here to be
recorded (written by rank 0, tracked as best on every rank). It also owns what rides along the
reduction's collectives: the agreed stop (a ``max`` column "this rank asked to stop") and any
columns another component adds with :meth:`MetricRouter.add_columns`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from expmate.best import check_mode
from expmate.metric_store import MetricStore
from expmate.ranks import process_group_ready
from expmate.reduction import Columns, LocalReduction, Reduction, distributed_reduction
from expmate.values import (
    FLOAT_INT_LIMIT,
    STEP_MAX,
    STEP_MIN,
    metric_value,
    reduce_op,
    step_value,
    weight_value,
)

DEFAULT: Any = object()
"""``log_metric(reduce=DEFAULT)``: use the logger's default reduction."""

MAX_WAITING = 2048
"""Lines held in memory before a flush is forced (bounds memory)."""

_WALLS_KEPT = 256  # wall-clock times of recent steps, for the rows of their reduced values


class MetricRouter:
    """Validates metric values and routes them to the store or the reduction, for one logger.

    Args:
        store: the rank's rows and bests.
        rank: the global rank (rank 0 writes reduced values).
        world_size: ranks in the job (1: a :class:`~expmate.reduction.LocalReduction`).
        default_reduce: the reduction of a ``log_metric`` without ``reduce=``.
        sync_timeout: seconds a collective waits for the other ranks.
        sync_every: steps per collective.
        flush: writes the buffered lines (called when too many wait in memory).
    """

    def __init__(
        self,
        store: MetricStore,
        *,
        rank: int,
        world_size: int,
        default_reduce: str | None,
        sync_timeout: float,
        sync_every: int,
        flush: Callable[[], None],
    ) -> None:
        self._store = store
        self.rank = rank
        self.world_size = world_size
        self.default_reduce = default_reduce
        self._timeout = sync_timeout
        self._every = sync_every
        self._flush = flush
        self._write_reduced = world_size == 1 or rank == 0
        self._options: dict[tuple[str, str], tuple[bool, str | None]] = {}
        self._walls: OrderedDict[int, float] = OrderedDict()
        self._last_step: int | None = None
        self._columns: list[Columns] = []
        self._reduction: Reduction | None = LocalReduction(self._emit) if world_size == 1 else None
        self._stopping = False
        self._forked = False
        self._stop = self.add_columns("stop", {"requested": "max"}, self._stop_reduced)

    # ------------------------------------------------------------------ values

    def log_metric(
        self,
        step: int,
        split: str,
        name: str,
        value: Any,
        track_best: bool,
        mode: str | None,
        reduce: str | None,
        weight: float,
    ) -> None:
        """Validate one value and record or reduce it (``ExperimentLogger.log_metric``).

        Raises:
            TypeError, ValueError: a bad step, split, name, value, mode, reduction or weight.
        """
        if type(step) is not int or not STEP_MIN <= step <= STEP_MAX:
            step = step_value(step)
        kind = type(value)
        if kind is not float and (
            kind is not int or not -FLOAT_INT_LIMIT <= value <= FLOAT_INT_LIMIT
        ):
            value = metric_value(value, what=f"value of metric {split!r}/{name!r}")
        if mode is not None:
            check_mode(mode)
        op = self.default_reduce if reduce is DEFAULT else reduce_op(reduce)
        if type(weight) is not float or not 0.0 <= weight < math.inf:
            weight = weight_value(weight)
        store = self._store
        if op is not None:
            self._reduce(step, split, name, value, op, weight, track_best, mode)
            waiting = store.waiting
        elif type(value) is float or type(value) is int:
            waiting = store.record(step, split, name, value, track_best, mode, time.time())
        else:
            waiting = store.defer(step, split, name, value, track_best, mode, time.time())
        if waiting >= MAX_WAITING:
            self._flush()

    def _reduce(
        self,
        step: int,
        split: str,
        name: str,
        value: Any,
        op: str,
        weight: float,
        track_best: bool,
        mode: str | None,
    ) -> None:
        key = (split, name)
        try:
            options = self._options.get(key)
        except TypeError:  # unhashable: the validation below names it
            options = None
        if options is None:
            self._store.key(split, name)  # validates split and name before anything is buffered
        if options is None or options[0] is not track_best or options[1] != mode:
            self._options[key] = (track_best, mode)
        if step != self._last_step:
            self._last_step = step
            walls = self._walls
            walls[step] = time.time()
            if len(walls) > _WALLS_KEPT:
                walls.popitem(last=False)
        reduction = self._reduction if self._reduction is not None else self.start()
        reduction.add(step, split, name, value, op, weight)

    def _emit(self, step: int, split: str, name: str, value: Any) -> None:
        """A reduced value (on every rank, maybe from the reduction's thread): rank 0 writes
        it; every rank tracks the best."""
        track_best, mode = self._options.get((split, name), (True, None))
        wall = self._walls.get(step)
        if wall is None:
            wall = time.time()
        if type(value) is float or type(value) is int:
            self._store.record(
                step, split, name, value, track_best, mode, wall, write=self._write_reduced
            )
        else:  # a device tensor in a one-process job: copied to the host at the flush
            self._store.defer(step, split, name, value, track_best, mode, wall)

    def start(self) -> Reduction:
        """Join the cross-rank reduction now (a collective: every rank at the same point).

        Raises:
            RuntimeError: several ranks but no process group, or in a forked child.
        """
        if self._reduction is not None:
            return self._reduction
        if self._forked:
            raise RuntimeError("reduced metrics cannot be logged from a forked child process")
        if not process_group_ready():
            raise RuntimeError(
                f"WORLD_SIZE={self.world_size} but no torch.distributed process group is "
                "initialized, so metrics cannot be reduced across ranks; call "
                "expmate.torch.mp.setup_ddp() before logging reduced metrics"
            )
        reduction = distributed_reduction(self._emit, timeout=self._timeout, sync_every=self._every)
        for columns in self._columns:
            reduction.add_columns(columns)
        self._reduction = reduction
        return reduction

    # ------------------------------------------------------------------ what rides along

    def add_columns(
        self, name: str, ops: Mapping[str, str], on_reduced: Callable[[dict[str, float]], None]
    ) -> Columns:
        """Columns combined across ranks in every collective of the reduction (no collective of
        their own); see :class:`expmate.reduction.Columns`. Every rank must add the same
        columns at the same point (when the logger is built).

        Under torchrun nothing is delivered until the logger has its reduction (from
        construction with ``reduce=`` or ``stop_signals``, else from the first reduced metric).
        """
        columns = Columns(name, ops, on_reduced)
        self._columns.append(columns)
        if self._reduction is not None:
            self._reduction.add_columns(columns)
        return columns

    def request_stop(self) -> None:
        """Ask every rank to stop (safe from a signal handler)."""
        self._stop.update({"requested": 1.0})

    def should_stop(self) -> bool:
        """Whether some rank asked to stop, as agreed by every rank at the same sync point."""
        return self._stopping

    def _stop_reduced(self, values: dict[str, float]) -> None:
        if values["requested"] >= 1.0:
            self._stopping = True

    # ------------------------------------------------------------------ sync points and reads

    def sync(self) -> None:
        """A sync point now when the logger reduces (a collective), waiting for all of it."""
        if self._reduction is not None:
            self._reduction.sync()

    def get_best(self, split: str, name: str) -> dict[str, Any] | None:
        """The best of a metric; a reduced one waits for the collective in flight first."""
        self._wait_for(split, name)
        return self._store.get_best(split, name)

    def get_last(self, split: str, name: str) -> dict[str, Any] | None:
        """The latest value of a metric; a reduced one waits for the collective in flight."""
        self._wait_for(split, name)
        return self._store.get_last(split, name)

    def wait(self) -> None:
        """Wait until the reduction in flight, if any, has recorded its values (no collective)."""
        if self._reduction is not None:
            self._reduction.wait()

    def _wait_for(self, split: str, name: str) -> None:
        if self._reduction is not None and (split, name) in self._options:
            self._reduction.wait()

    def close(self, *, sync: bool = True) -> None:
        """The final sync (unless ``sync=False``) and the release of the reduction."""
        reduction = self._reduction
        if reduction is None:
            return
        if sync:
            reduction.close()
        else:
            reduction.abandon()

    def after_fork(self) -> None:
        """In a forked child: the parent's reduction (its group and thread) is not ours."""
        self._forked = True
        if not isinstance(self._reduction, LocalReduction):
            self._reduction = None
