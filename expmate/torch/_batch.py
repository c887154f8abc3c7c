"""What a reducer holds between sync points: each step's buffered values, and the job of a sync.

A *window* is the steps that travel in one collective: ``step // sync_every``. Within a window
each step has a *slot*, ``step - window * sync_every``, so every rank puts the same step in the
same row of the matrix it sends, whatever steps it skipped.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from expmate.device_copy import HostCopy
from expmate.reduction import Columns
from expmate.torch._layout import Layout, MetricKey, Payload, Plan

MAX_EXACT_INT = 2**53
"""Larger integers do not survive the float64 row exactly; they are reduced as floats."""


class StepValues:
    """One step's buffered metrics, in the order they were first added (a later value of the
    same ``(split, name)`` replaces the earlier one in place)."""

    __slots__ = ("index", "ints", "specs", "step", "tensors", "values", "weights")

    def __init__(self, step: Any) -> None:
        self.step = step
        self.specs: list[MetricKey] = []
        self.values: list[Any] = []
        self.weights: list[float] = []
        self.ints: list[bool] = []
        self.index: dict[tuple[str, str], int] = {}
        self.tensors = 0

    def put(self, split: str, name: str, op: str, value: Any, weight: float) -> None:
        """Buffer one value; a tensor is snapshotted (``detach().clone()``, no host sync)."""
        kind = type(value)
        tensor = False
        if kind is float:
            whole = False
        elif kind is int or kind is bool:
            value = int(value)
            whole = -MAX_EXACT_INT <= value <= MAX_EXACT_INT
        elif isinstance(value, torch.Tensor):
            value = value.detach().clone()  # later in-place changes do not count
            whole = not (value.is_floating_point() or value.is_complex())
            tensor = True
        else:
            value, whole = float(value), False
        at = self.index.get((split, name))
        if at is None:
            self.index[(split, name)] = len(self.values)
            self.specs.append((split, name, op))
            self.values.append(value)
            self.weights.append(weight)
            self.ints.append(whole)
            self.tensors += tensor
            return
        self.tensors += tensor - isinstance(self.values[at], torch.Tensor)
        self.specs[at] = (split, name, op)
        self.values[at] = value
        self.weights[at] = weight
        self.ints[at] = whole

    def payload(self, values: list[Any]) -> Payload:
        """What this step sends on the slow path, with host ``values``."""
        return self.step, [
            (split, name, op, value, weight, whole)
            for (split, name, op), value, weight, whole in zip(
                self.specs, values, self.weights, self.ints, strict=True
            )
        ]


class Slot:
    """One step of a job: where it goes in the matrix, its values and how they are laid out.

    Args:
        index: its row in the window.
        values: the step's buffered values.
        plan: how they map onto their layout.
        known: the layout was agreed before (the fast path can carry it).
    """

    __slots__ = ("index", "known", "plan", "values")

    def __init__(self, index: int, values: StepValues, plan: Plan, known: bool) -> None:
        self.index = index
        self.values = values
        self.plan = plan
        self.known = known


def start_copy(slots: list[Slot], pinned: Any) -> HostCopy | None:
    """Start copying the tensor values of ``slots`` to the host (None when there are none)."""
    tensors = [
        value
        for slot in slots
        if slot.values.tensors
        for value in slot.values.values
        if isinstance(value, torch.Tensor)
    ]
    return HostCopy(tensors, pinned) if tensors else None


def host_values(slots: list[Slot], copy: HostCopy | None) -> list[list[Any]]:
    """Each slot's values with its tensors replaced by their host floats (waits for the copy)."""
    floats = iter(copy.result() if copy is not None else ())
    return [
        [next(floats) if isinstance(v, torch.Tensor) else v for v in slot.values.values]
        if slot.values.tensors
        else slot.values.values
        for slot in slots
    ]


class Done:
    """Set once when a job has run; waited for by the thread that built it (a bare lock: an
    Event per sync point would cost more than the rest of the hand-over)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        self._lock.release()

    def is_set(self) -> bool:
        return not self._lock.locked()

    def wait(self, timeout: float) -> bool:
        """True once set (at once if it is), False after ``timeout`` seconds."""
        if self._lock.acquire(timeout=timeout):
            self._lock.release()
            return True
        return False


class Job:
    """One sync point: what a rank sends, and, once it has run, what came back.

    Built on the training thread; run once (on the reducer's thread, or inline when blocking),
    which also emits its reduced values; ``done`` is set after that, and what only a sync point
    may change (errors, the stop, the catch-up) is applied by the training thread after it.

    Args:
        seq: its number among this reducer's jobs (the same on every rank).
        window: the window of the steps sent, or None when nothing was buffered.
        closing: the last collective of this rank (``close()``).
        slots: the steps sent.
        column_sets: the ride-along columns registered when the job was built.
        columns: their current values, in order.
        copy: the device values on their way to the host.
        width: width of a step's values in the row (the agreed row width).
    """

    __slots__ = (
        "closing",
        "column_sets",
        "columns",
        "copy",
        "done",
        "drop_through",
        "emits",
        "ended",
        "failure",
        "handle",
        "mismatch",
        "reduced_columns",
        "remember",
        "seq",
        "slots",
        "width",
        "window",
    )

    def __init__(
        self,
        *,
        seq: int,
        window: Any,
        closing: bool,
        slots: list[Slot],
        column_sets: tuple[Columns, ...],
        columns: list[float],
        copy: HostCopy | None,
        width: int,
    ) -> None:
        self.seq = seq
        self.window = window
        self.closing = closing
        self.slots = slots
        self.column_sets = column_sets
        self.columns = columns
        self.copy = copy
        self.width = width
        self.done = Done()
        self.emits: list[tuple[Any, str, str, float | int]] = []
        self.remember: list[Layout] = []
        """Layouts agreed or used, in order: every rank applies the same sequence."""
        self.reduced_columns: list[float] | None = None
        self.mismatch: str | None = None
        self.drop_through: float | None = None
        """This rank was behind: discard its batches up to this window."""
        self.ended = False
        """Some ranks closed while others did not: nothing more can be reduced."""
        self.failure: BaseException | None = None
        self.handle: Any = None
        """Free for a scheduler that keeps something per job (a work handle)."""

    @property
    def column_ops(self) -> list[str]:
        """The op of each ride-along column, in order."""
        return [op for columns in self.column_sets for op in columns.ops]

    @property
    def steps(self) -> list[Any]:
        """The steps this rank sent, in slot order."""
        return [slot.values.step for slot in self.slots]
