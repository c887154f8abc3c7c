"""Cross-rank metric reduction: one collective per sync point, mismatches raised on every rank.

Every rank hands its local values to :class:`MetricReducer`; they wait in a per-step buffer. At a
sync point (the step changes, :meth:`MetricReducer.sync`, :meth:`MetricReducer.close`) every rank
sends one float64 row ``[fingerprint, step, contributions...]`` in one ``all_gather`` on a
dedicated gloo group, and every rank reduces the gathered matrix itself, so all ranks hold the
same reduced values. The fingerprint names the rank's metric key set; when all fingerprints and
steps agree (the steady state) that one collective is all. Otherwise every rank sees the same
disagreement and takes the same slow path: one ``all_gather_object`` of the ranks' keys and values,
then either agreement on the new key set (remembered for later steps) or the same
:class:`MetricMismatchError` on every rank.

Example:
    >>> seen = []
    >>> reducer = MetricReducer(lambda step, split, name, value: seen.append((step, name, value)))
    >>> reducer.add(0, "train", "loss", 0.5, "mean", 1.0)
    >>> reducer.add(1, "train", "loss", 0.25, "mean", 1.0)  # step changed: step 0 is reduced
    >>> reducer.close()
    >>> seen
    [(0, 'loss', 0.5), (1, 'loss', 0.25)]
"""

from __future__ import annotations

import math
import weakref
from array import array
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from expmate.torch._layout import (
    OPS,
    ColumnStats,
    Layout,
    MetricKey,
    Plan,
    fill_row,
    make_layout,
    make_plan,
    metric_label,
    mismatch_report,
    payload_matrix,
    reduce_columns,
)
from expmate.torch._transport import (
    GlooTransport,
    LocalTransport,
    Transport,
    default_transport,
)
from expmate.values import host_floats, weight_value

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

Emit = Callable[[Any, str, str, float], None]
T = TypeVar("T")

_SENTINEL = -1.0  # fingerprint sent by a rank whose key set no remembered layout describes
_LAYOUTS_KEPT = 16
_HEADER = 2  # fingerprint, step
_PENDING_SHOWN = 20
_PLANS_KEPT = 64
_OP_SET = frozenset(OPS)


class MetricMismatchError(RuntimeError):
    """Ranks logged different metrics (names, splits, reduce ops or steps) for one sync point.

    Raised with the same message on every rank; the values of that sync point are discarded.
    """


class SyncTimeoutError(RuntimeError):
    """A rank did not reach a sync point within the timeout (or left the job)."""


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


class MetricReducer:
    """Reduce metric values across ranks, one collective per sync point.

    Args:
        emit: called on every rank after each sync as ``emit(step, split, name, value)`` for every
            metric of the step, in the order this rank first added them; ``value`` is a float.
        timeout: seconds a sync waits for the other ranks before :class:`SyncTimeoutError`.
        transport: the collectives to use; default: a new gloo group over all ranks when a
            process group of more than one rank is initialised (a collective: every rank must
            construct its reducer at the same point), else no communication at all.

    Semantics:
        ``mean`` is ``sum(value * weight) / sum(weight)`` over ranks (NaN when the weights sum to
        0); ``sum``, ``min`` and ``max`` ignore the weight (as a single process does, where
        every reduction returns the value itself).
        The same ``(split, name)`` added twice in one step: the later value, op and weight
        replace the earlier ones. Tensor values are snapshotted (``detach().clone()``, no host
        sync) when added and copied to the host once per sync point.
    """

    def __init__(
        self, emit: Emit, *, timeout: float = 300.0, transport: Transport | None = None
    ) -> None:
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._emit = emit
        self._timeout = float(timeout)
        self._transport = transport if transport is not None else _group_transport(timeout)
        self._layouts: OrderedDict[tuple[MetricKey, ...], Layout] = OrderedDict()
        self._plans: dict[tuple[MetricKey, ...], Plan] = {}
        self._row_width = _HEADER
        self._wire_buffer = array("d")
        self._wire = torch.empty(0, dtype=torch.float64)
        self._remember(make_layout(()))
        self._reset()
        self._failure: BaseException | None = None
        self._closed = False
        _LIVE.append(weakref.ref(self))

    def _reset(self) -> None:
        # The buffer of one step, in the order metrics were first added (a later value of the
        # same (split, name) replaces the earlier one in place).
        self._step: Any = None
        self._specs: list[MetricKey] = []
        self._values: list[Any] = []
        self._weights: list[float] = []
        self._index: dict[tuple[str, str], int] = {}
        self._has_tensor = False

    @property
    def world_size(self) -> int:
        """Number of ranks taking part."""
        return self._transport.world_size

    def add(self, step: Any, split: str, name: str, value: Any, op: str, weight: float) -> None:
        """Buffer one local value; sync the buffered step first when ``step`` differs from it.

        Raises:
            ValueError: ``op`` is not mean/sum/min/max, or ``weight`` is negative or not finite.
            MetricMismatchError, SyncTimeoutError: from the sync of the previous step.
        """
        if op not in _OP_SET:
            raise ValueError(f"reduce must be one of {', '.join(OPS)}, got {op!r}")
        if not (type(weight) is float and 0.0 <= weight < math.inf):
            weight = weight_value(weight)
        if self._closed or self._failure is not None:
            self._check_usable()
        if step != self._step and self._step is not None:
            self.sync()
        self._step = step
        if type(value) is not float:
            value = self._snapshot(value)
        key = (split, name)
        at = self._index.get(key)
        if at is None:
            self._index[key] = len(self._values)
            self._specs.append((split, name, op))
            self._values.append(value)
            self._weights.append(weight)
        else:
            self._specs[at] = (split, name, op)
            self._values[at] = value
            self._weights[at] = weight

    def _snapshot(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            self._has_tensor = True
            return value.detach().clone()  # no host sync; later in-place changes do not count
        return float(value)

    def sync(self) -> None:
        """Reduce what is buffered now: a collective that every rank must reach at the same
        point, even with nothing buffered.

        Raises:
            MetricMismatchError: the ranks' metric sets, ops or steps differ (on every rank).
            SyncTimeoutError: another rank did not arrive within the timeout or left the job.
        """
        self._check_usable()
        step, spec = self._step, tuple(self._specs)
        values = host_floats(self._values) if self._has_tensor else self._values
        weights = self._weights
        self._reset()
        plan = self._plans.get(spec) or self._new_plan(spec)
        known = plan.layout.keys in self._layouts
        row = [0.0] * self._row_width
        row[0] = plan.layout.fingerprint if known else _SENTINEL
        row[1] = float(step) if step is not None else 0.0
        if known:
            fill_row(row, plan, values, weights)
        matrix = self._collective(self._transport.all_gather, self._wire_of(row), step, plan)
        stats = ColumnStats(matrix)
        if known and stats.agree(row[0]):
            self._layouts.move_to_end(plan.layout.keys)
        else:
            stats = self._slow_path(step, plan, values, weights)
        for (split, name, _), reduced in zip(spec, reduce_columns(plan, stats), strict=True):
            self._emit(step, split, name, reduced)

    def close(self) -> None:
        """Final sync (a collective, unless an earlier sync failed), then release the group.

        Calling it again does nothing.
        """
        if self._closed:
            return
        try:
            if self._failure is None:
                self.sync()
        finally:
            self._closed = True
            self._transport.close()
            _LIVE[:] = [ref for ref in _LIVE if ref() not in (None, self)]

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("this MetricReducer is closed")
        if self._failure is not None:
            raise SyncTimeoutError(
                f"an earlier metric sync failed ({self._failure}); metrics can no longer be "
                "reduced in this job"
            )

    def _wire_of(self, row: list[float]) -> torch.Tensor:
        """The row as a float64 tensor over a reused host buffer (no tensor built per sync)."""
        if len(self._wire_buffer) != len(row):
            self._wire_buffer = array("d", row)
            self._wire = torch.frombuffer(self._wire_buffer, dtype=torch.float64)
        else:
            self._wire_buffer[:] = array("d", row)
        return self._wire

    def _new_plan(self, spec: tuple[MetricKey, ...]) -> Plan:
        if len(self._plans) >= _PLANS_KEPT:
            self._plans.clear()
        plan = self._plans[spec] = make_plan(spec, _HEADER)
        return plan

    def _slow_path(
        self, step: Any, plan: Plan, values: list[Any], weights: list[float]
    ) -> ColumnStats:
        """Exchange keys and values as objects; agree on the key set or raise on every rank."""
        metrics = [
            (s, n, op, v, w) for (s, n, op), v, w in zip(plan.spec, values, weights, strict=True)
        ]
        payloads = self._collective(self._transport.all_gather_object, (step, metrics), step, plan)
        report = mismatch_report(payloads)
        if report is not None:
            raise MetricMismatchError(
                "ranks logged different metrics for the same sync point; every rank must log "
                "the same metrics (split, name and reduce op) for a step and reach "
                f"sync()/flush()/close() at the same points. The values were discarded.\n{report}"
            )
        self._remember(plan.layout)
        return ColumnStats(payload_matrix(payloads, plan, _HEADER))

    def _remember(self, layout: Layout) -> None:
        # Every rank updates its layouts identically (after agreement), so the row width, the
        # largest remembered layout, is the same on every rank.
        self._layouts[layout.keys] = layout
        self._layouts.move_to_end(layout.keys)
        while len(self._layouts) > _LAYOUTS_KEPT:
            self._layouts.popitem(last=False)
        self._row_width = _HEADER + max(lay.width for lay in self._layouts.values())

    def _collective(self, fn: Callable[[Any], T], arg: Any, step: Any, plan: Plan) -> T:
        try:
            return fn(arg)
        except RuntimeError as exc:
            self._failure = exc
            raise SyncTimeoutError(self._timeout_message(step, plan, exc)) from exc

    def _timeout_message(self, step: Any, plan: Plan, exc: BaseException) -> str:
        names = [metric_label(s, n) for s, n, _ in plan.layout.keys]
        if len(names) > _PENDING_SHOWN:
            names = [*names[:_PENDING_SHOWN], f"... ({len(plan.layout.keys)} metrics)"]
        pending = ", ".join(names) if names else "none"
        where = f"step {step}" if step is not None else "a sync with nothing buffered"
        return (
            f"metric sync on rank {self._transport.rank} failed at {where} (pending metrics: "
            f"{pending}): another rank did not reach the sync point within {self._timeout:g}s "
            "or left the job. Every rank must log the same steps and call sync()/flush()/close() "
            f"at the same points. Cause: {str(exc).strip()[:500]}"
        )


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
