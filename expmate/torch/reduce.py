"""Cross-rank metric reduction that never stalls training: asynchronous, batched, one collective
per sync point, the same results and the same errors on every rank.

Every rank hands its local values to :class:`MetricReducer`. They wait in a buffer of *windows*
of ``sync_every`` steps (``step // sync_every``). A *sync point* is the first value of a new
window (decided from the step alone, the same on every rank), :meth:`MetricReducer.sync` or
:meth:`MetricReducer.close`. At a sync point the rank

1. waits for the previous sync point's job (normally long complete) and applies what only a sync
   point may change, identically on every rank: its error is raised now, naming its steps; the
   agreed stop and the other ride-along columns are handed over; a rank behind catches up;
2. packs the window into one float64 row (``sync_every`` step rows plus control and ride-along
   columns), starts copying device values to pinned host memory (no host sync), and hands the
   job to the reducer's own thread, which waits for the copy, makes the one ``all_gather`` on a
   dedicated gloo group, reads the gathered matrix (the slow path, one ``all_gather_object``,
   when a step's key set is new or disagrees) and emits the reduced values at once: rank 0
   writes them, every rank tracks bests;
3. returns to training. The value that triggered the sync point is buffered before any error of
   step 1 is raised, so it is never lost.

So a job costs the training thread a few microseconds; its collective overlaps the next window's
work. A background thread was chosen over gloo's asynchronous work handles by measurement (see
``docs/distributed.md``): handing a job over costs the training thread less than posting the
collective itself and reading its result, and only a thread can also wait for CUDA copies, run
the slow path and write the rows without the training thread.

When the ranks disagree (different metrics, ops or steps) every rank raises the same
:class:`MetricMismatchError` at its next sync point and the values of those steps are dropped.
A rank that sent an older window than the others (it skipped steps) also drops its batches up to
the newest window sent, so the next sync point agrees again. A rank that closes while others do
not makes the reduction end on every rank with the same error, instead of a timeout. A rank that
never arrives makes the others raise :class:`SyncTimeoutError` within the timeout, naming the
ranks that did not arrive. Ranks built with different ``sync_every`` or ride-along columns (their
rows would differ in width) are told apart before the first row, by one small collective: every
rank raises the same :class:`MetricMismatchError` and the reduction ends.

Ride-along columns
------------------
A component that needs a few numbers combined across ranks (a stop request, each rank's latest
system sample) can send them in the collective the reducer makes anyway, at no extra cost::

    from expmate.reduction import Columns

    def on_reduced(values: dict[str, float]) -> None:   # every rank, after each sync
        ...

    columns = Columns("system", {"cpu": "max", "rss": "max", "samples": "max"}, on_reduced)
    reducer.add_columns(columns)          # same columns, same point, on every rank
    columns.update({"cpu": 93.0, "samples": 12.0})   # any time, any thread (or signal handler)

Each column's current value travels in every collective; after each sync every rank calls
``on_reduced`` with the ``max``/``min``/``sum`` over ranks, on the thread that reached the sync
point (in the order the sync points happen; a callback must not raise or block: an exception is
reported once to stderr). Columns must be added at the same point on every rank (when the logger
is built): they widen the row every rank sends. The logger's agreed stop is one such column
(``max`` of "this rank asked to stop"); under :class:`expmate.reduction.LocalReduction` (one
process) updates are handed straight back. Through the logger use its router:
``logger._router.add_columns(name, ops, on_reduced)``.

Example:
    >>> seen = []
    >>> reducer = MetricReducer(lambda step, split, name, value: seen.append((step, name, value)))
    >>> reducer.add(0, "train", "loss", 0.5, "mean", 1.0)
    >>> reducer.add(1, "train", "loss", 0.25, "mean", 1.0)  # new window: step 0 goes out
    >>> reducer.close()
    >>> seen
    [(0, 'loss', 0.5), (1, 'loss', 0.25)]
"""

from __future__ import annotations

import math
import os
import queue
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch.distributed as dist

from expmate.device_copy import PinnedBuffers
from expmate.reduction import Columns, Emit, register_distributed
from expmate.sinks import report_failure
from expmate.torch._batch import Job, Slot, StepValues, start_copy
from expmate.torch._exchange import Exchange, MetricMismatchError, SyncTimeoutError
from expmate.torch._layout import OPS, Layout, Plan, format_steps, make_plan
from expmate.torch._transport import (
    GlooTransport,
    LocalTransport,
    Transport,
    default_transport,
)
from expmate.values import step_value, weight_value

__all__ = [
    "GlooTransport",
    "LocalTransport",
    "MetricMismatchError",
    "MetricReducer",
    "SyncTimeoutError",
    "Transport",
    "close_all",
    "default_transport",
]

_LAYOUTS_KEPT = 16
_PLANS_KEPT = 64
_OP_SET = frozenset(OPS)


def _group_transport(timeout: float) -> Transport:
    try:
        return default_transport(timeout)
    except RuntimeError as exc:  # DistStoreError: a rank never came to create the group
        raise SyncTimeoutError(
            f"creating the metric reduction group failed on rank {dist.get_rank()}: another rank "
            f"did not create its reducer within {timeout:g}s. Every rank must construct its "
            "logger, and log its first reduced metric, at the same point. "
            f"Cause: {str(exc).strip()[:500]}"
        ) from exc


class _Worker:
    """The reducer's own thread: runs one job at a time, in the order handed over."""

    def __init__(self, run: Callable[[Job], None]) -> None:
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._loop, args=(run,), name="expmate-reduce", daemon=True
        )
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def stop(self, *, join: bool) -> None:
        self._queue.put(None)
        if join:
            self._thread.join(timeout=10.0)

    def _loop(self, run: Callable[[Job], None]) -> None:
        while (job := self._queue.get()) is not None:
            run(job)


def _worse(first: BaseException | None, second: BaseException | None) -> BaseException | None:
    """The error to raise of two sync points' errors: a failed collective outranks a mismatch;
    two mismatches become one error that reports both."""
    if first is None or second is None or second is first:
        return first if second is None else second
    if isinstance(second, SyncTimeoutError) and not isinstance(first, SyncTimeoutError):
        return second
    if type(first) is MetricMismatchError and type(second) is MetricMismatchError:
        return MetricMismatchError(f"{first}\n{second}")
    return first


class MetricReducer:
    """Reduce metric values across ranks: one collective per sync point, off the training thread.

    Args:
        emit: called on every rank as ``emit(step, split, name, value)`` for every reduced
            metric, step by step in step order, each step's metrics in the order this rank first
            added them. ``value`` is a float, or an int for a sum/min/max of integers.
        timeout: seconds a collective waits for the other ranks before :class:`SyncTimeoutError`.
        transport: the collectives to use; default: a new gloo group over all ranks when a
            process group of more than one rank is initialised (a collective: every rank must
            construct its reducer at the same point), else no communication at all.
        sync_every: steps per collective: the values of ``step // sync_every`` travel together.
        blocking: wait for each collective at its own sync point (errors raised there, nothing
            left in flight); the default hands it to the reducer's thread.

    Semantics:
        ``mean`` is ``sum(value * weight) / sum(weight)`` over ranks (NaN when the weights sum to
        0); ``sum``, ``min`` and ``max`` ignore the weight, and keep integers integers when every
        rank's value is one (up to 2**53). The same ``(split, name)`` added twice for one step:
        the later value, op and weight replace the earlier ones. Tensor values are snapshotted
        (``detach().clone()``, no host sync) when added and copied to the host once per sync
        point (CUDA: pinned memory and an event, read by the reducer's thread).
    """

    def __init__(
        self,
        emit: Emit,
        *,
        timeout: float = 300.0,
        transport: Transport | None = None,
        sync_every: int = 1,
        blocking: bool = False,
    ) -> None:
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if type(sync_every) is not int or sync_every < 1:
            raise ValueError(f"sync_every must be a positive number of steps, got {sync_every!r}")
        self._emit = emit
        self._timeout = float(timeout)
        self._every = sync_every
        self._transport = transport if transport is not None else _group_transport(timeout)
        # One rank has nothing to wait for: run every job at once.
        self._blocking = bool(blocking) or self._transport.world_size == 1
        self._exchange = Exchange(self._transport, sync_every=sync_every, timeout=self._timeout)
        self._columns: list[Columns] = []
        self._layouts: OrderedDict[Any, Layout] = OrderedDict()
        self._plans: dict[Any, Plan] = {}
        self._row_width = 0
        self._window: Any = None
        self._slots: dict[int, StepValues] = {}
        self._current: StepValues | None = None
        self._seq = 0
        self._inflight: Job | None = None
        self._broken: BaseException | None = None
        self._ended: MetricMismatchError | None = None
        self._drop_through: float | None = None
        self._worker: _Worker | None = None
        self._pinned = PinnedBuffers()
        self._forked = False
        self._closed = False
        self._unusable = False  # closed, broken, ended or forked: add() must check which
        _LIVE.append(weakref.ref(self))

    @property
    def world_size(self) -> int:
        """Number of ranks taking part."""
        return self._transport.world_size

    @property
    def transport(self) -> Transport:
        """The transport (a :class:`GlooTransport` counts its collectives in ``counts``)."""
        return self._transport

    # ------------------------------------------------------------------ buffering

    def add(self, step: int, split: str, name: str, value: Any, op: str, weight: float) -> None:
        """Buffer one local value; the first value of a new window is a sync point.

        Raises:
            ValueError: ``op`` is not mean/sum/min/max, or ``weight`` is negative or not finite.
            TypeError: ``step`` is not an integer.
            MetricMismatchError, SyncTimeoutError: from the previous sync point (``value`` is
                buffered all the same).
        """
        if op not in _OP_SET:
            raise ValueError(f"reduce must be one of {', '.join(OPS)}, got {op!r}")
        if not (type(weight) is float and 0.0 <= weight < math.inf):
            weight = weight_value(weight)
        if type(step) is not int:
            step = step_value(step)
        if self._unusable:
            self._check_usable()
        current = self._current
        error = None
        if current is None or current.step != step:
            current, error = self._step_values(step)
        current.put(split, name, op, value, weight)
        if error is not None:
            raise error

    def _step_values(self, step: int) -> tuple[StepValues, BaseException | None]:
        """The buffer of a step not buffered last; the first of a new window is a sync point,
        whose error is returned (the caller buffers its value first, then raises it)."""
        every = self._every
        window = step if every == 1 else step // every
        error = None
        if window != self._window:
            if self._window is not None:
                error = self._advance()
            self._window = window
        index = step - window * every
        current = self._slots.get(index)
        if current is None:
            current = self._slots[index] = StepValues(step)
        self._current = current
        return current, error

    def add_columns(self, columns: Columns) -> None:
        """Send ``columns`` in every collective from the next sync point on (see the module
        docstring); every rank must add the same columns at the same point."""
        self._columns.append(columns)

    # ------------------------------------------------------------------ sync points

    def sync(self) -> None:
        """A sync point now, even with nothing buffered (a collective every rank must reach at
        the same point), that waits until everything is reduced and emitted.

        Raises:
            MetricMismatchError: the ranks' metric sets, ops or steps differ (on every rank).
            SyncTimeoutError: another rank did not arrive within the timeout or left the job.
        """
        self._check_usable()
        error = self._consume()
        job = self._pack(force=True)
        if job is not None:
            self._post(job)
            error = _worse(error, self._consume())
        if error is not None:
            raise error

    def wait(self) -> None:
        """Wait until the collective in flight, if any, has emitted its values (no
        communication; its errors are raised at the next sync point)."""
        job = self._inflight
        if job is not None and not self._forked:
            job.done.wait(self._wait_limit)

    def close(self) -> None:
        """Final sync (a collective, unless an earlier sync failed), then release the group.

        Calling it again does nothing.

        Raises:
            MetricMismatchError, SyncTimeoutError: of the last two sync points.
        """
        if self._closed:
            return
        error = None
        try:
            if not self._forked:
                error = self._consume()
                job = self._pack(force=True, closing=True)
                if job is not None:
                    self._post(job)
                    error = _worse(error, self._consume())
        finally:
            self._closed = self._unusable = True
            self._release()
        if error is not None:
            raise error

    def abandon(self) -> None:
        """Close without a final sync (the other ranks may never join one): buffered values
        are dropped; a collective in flight is left to its thread."""
        if self._closed:
            return
        if self._inflight is not None and self._inflight.done.is_set():
            self._inflight = None
        self._closed = self._unusable = True
        self._release()

    # ------------------------------------------------------------------ the pipeline

    @property
    def _wait_limit(self) -> float:
        # A job is one collective and at most one object exchange, each bounded by the timeout.
        return 3 * self._timeout + 30.0

    def _advance(self) -> BaseException | None:
        """The sync point of a new window: collect the last job, send the finished window."""
        error = self._consume()
        job = self._pack(force=False)
        if job is not None:
            self._post(job)
            if self._blocking:
                error = _worse(error, self._consume())
        return error

    def _pack(self, *, force: bool, closing: bool = False) -> Job | None:
        """The job of the buffered window (None when there is nothing to send and not ``force``,
        or when this reducer can make no more collectives)."""
        window, slots = self._window, self._slots
        self._window, self._slots, self._current = None, {}, None
        if self._broken is not None or self._ended is not None:
            return None
        if window is not None and self._drop_through is not None:
            if window <= self._drop_through:  # behind the other ranks: catch up
                window, slots = None, {}
            else:
                self._drop_through = None
        if window is None and not force:
            return None
        planned = []
        for index, values in sorted(slots.items()):
            plan = self._plan(values)
            planned.append(Slot(index, values, plan, plan.layout.ident in self._layouts))
        job = Job(
            seq=self._seq,
            window=window,
            closing=closing,
            slots=planned,
            column_sets=tuple(self._columns),
            columns=[v for columns in self._columns for v in columns.current()],
            copy=start_copy(planned, self._pinned),
            width=self._row_width,
        )
        self._seq += 1
        return job

    def _plan(self, values: StepValues) -> Plan:
        key = (tuple(values.specs), tuple(values.ints))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _PLANS_KEPT:
                self._plans.clear()
            plan = self._plans[key] = make_plan(key[0], ints=key[1])
        return plan

    def _post(self, job: Job) -> None:
        self._inflight = job
        if self._blocking:
            self._run(job)
            return
        if self._worker is None:
            self._worker = _Worker(self._run)
        self._worker.submit(job)

    def _run(self, job: Job) -> None:
        """Make the job's collectives and emit its reduced values (the reducer's thread)."""
        self._exchange.run(job)
        self._finish(job)

    def _finish(self, job: Job) -> None:
        """After the collectives: remember the layouts, emit the values, mark the job done."""
        try:
            if job.failure is None:
                for layout in job.remember:
                    self._remember(layout)
                emit = self._emit
                for step, split, name, value in job.emits:
                    emit(step, split, name, value)
        except BaseException as exc:  # noqa: BLE001 - a failing emit: raised on the training thread
            job.failure = exc
        finally:
            job.done.set()

    def _consume(self) -> BaseException | None:
        """Wait for the job in flight and apply all of it; return its error (not raised)."""
        job = self._inflight
        if job is None:
            return None
        self._inflight = None
        if not job.done.wait(self._wait_limit):
            self._unusable = True
            self._broken = SyncTimeoutError(
                f"metric sync on rank {self._transport.rank} at "
                f"{format_steps(job.steps) if job.steps else 'a sync with nothing buffered'} "
                f"did not complete within {self._wait_limit:g}s"
            )
            return self._broken
        return self._apply_control(job)

    def _apply_control(self, job: Job) -> BaseException | None:
        """What only a sync point may change: errors, the catch-up, the ride-along columns."""
        if job.failure is not None:
            self._broken, self._unusable = job.failure, True
            return job.failure
        if job.reduced_columns is not None:
            at = 0
            for columns in job.column_sets:
                part = job.reduced_columns[at : at + len(columns.names)]
                at += len(columns.names)
                try:
                    columns.deliver(part)
                except Exception as exc:  # noqa: BLE001 - a component's bug must not stop training
                    report_failure(f"the callback of the {columns.name!r} columns", exc)
        if job.drop_through is not None:
            self._drop_through = job.drop_through
        if job.mismatch is None:
            return None
        error = MetricMismatchError(job.mismatch)
        if job.ended:
            self._ended, self._unusable = error, True
        return error

    def _remember(self, layout: Layout) -> None:
        # Every rank applies the same sequence of layouts (in step order, one job after the
        # other, before the next job is packed), so the row width, the widest remembered
        # layout, is the same on every rank.
        layouts = self._layouts
        if layout.ident in layouts:
            layouts.move_to_end(layout.ident)  # the widths are unchanged
            return
        layouts[layout.ident] = layout
        while len(layouts) > _LAYOUTS_KEPT:
            layouts.popitem(last=False)
        self._row_width = max(lay.width for lay in layouts.values())

    def _release(self) -> None:
        busy = self._inflight is not None  # its thread may still be inside a collective
        if self._worker is not None:
            self._worker.stop(join=not busy)
            self._worker = None
        if not busy and not self._forked:
            self._transport.close()
        _LIVE[:] = [ref for ref in _LIVE if ref() not in (None, self)]

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("this MetricReducer is closed")
        if self._forked:
            raise RuntimeError(
                "this MetricReducer belongs to the parent process: a forked child cannot "
                "reduce metrics"
            )
        if self._broken is not None:
            raise SyncTimeoutError(
                f"an earlier metric sync failed ({self._broken}); metrics can no longer be "
                "reduced in this job"
            )
        if self._ended is not None:
            raise MetricMismatchError(str(self._ended))

    def _after_fork(self) -> None:
        # The thread and the group belong to the parent; the child must not touch them.
        self._forked = self._unusable = True
        self._worker = None
        self._inflight = None


_LIVE: list[weakref.ref[MetricReducer]] = []


def close_all() -> None:
    """Close every open reducer of this process, in creation order (the same on every rank).

    A collective: :func:`expmate.torch.mp.cleanup_ddp` calls it before destroying the process
    group, so values still buffered are reduced while the group exists.
    """
    first: BaseException | None = None
    for ref in list(_LIVE):
        reducer = ref()
        if reducer is None:
            continue
        try:
            reducer.close()
        except RuntimeError as exc:  # close the others too, then report the first failure
            first = first or exc
    _LIVE.clear()
    if first is not None:
        raise first


def distributed_reduction(emit: Emit, *, timeout: float, sync_every: int) -> MetricReducer:
    """The logger's distributed reduction (registered with the core when this module loads)."""
    return MetricReducer(emit, timeout=timeout, sync_every=sync_every)


register_distributed(distributed_reduction)


def _after_fork_in_child() -> None:
    for ref in list(_LIVE):
        reducer = ref()
        if reducer is not None:
            reducer._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
