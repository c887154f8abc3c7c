"""What a reducer holds between sync points: each step's buffered values, and the job of a sync.

A *window* is the steps that travel in one collective: ``step // sync_every``. Within a window
each step has a *slot*, ``step - window * sync_every``, so every rank puts the same step in the
same row of the matrix it sends, whatever steps it skipped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from expmate.reduction import Columns
from expmate.torch._device_copy import HostCopy
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


@dataclass(frozen=True)
class Slot:
    """One step of a job: where it goes in the matrix, its values and how they are laid out."""

    index: int
    values: StepValues
    plan: Plan
    known: bool
    """Its layout was agreed before (the fast path can carry it)."""


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


@dataclass(eq=False)
class Job:
    """One sync point: what a rank sends, and, once it has run, what came back.

    Built on the training thread; run once (on the reducer's thread, or inline when blocking);
    its results are applied on the rank that built it after ``done`` is set.
    """

    seq: int
    window: Any
    """The window of the steps sent, or None when nothing was buffered."""
    closing: bool
    """The last collective of this rank (``close()``)."""
    slots: list[Slot]
    column_sets: tuple[Columns, ...]
    """The ride-along columns registered when the job was built."""
    columns: list[float]
    """Their current values, in order."""
    copy: HostCopy | None
    width: int
    """Width of a step's values in the row (the agreed row width)."""
    done: threading.Event = field(default_factory=threading.Event)
    emits: list[tuple[Any, str, str, float | int]] = field(default_factory=list)
    remember: list[Layout] = field(default_factory=list)
    """Layouts agreed or used, in order: every rank applies the same sequence."""
    reduced_columns: list[float] | None = None
    mismatch: str | None = None
    drop_through: float | None = None
    """This rank was behind: discard its batches up to this window."""
    ended: bool = False
    """Some ranks closed while others did not: nothing more can be reduced."""
    failure: BaseException | None = None
    values_applied: bool = False

    @property
    def column_ops(self) -> list[str]:
        """The op of each ride-along column, in order."""
        return [op for columns in self.column_sets for op in columns.ops]

    @property
    def steps(self) -> list[Any]:
        """The steps this rank sent, in slot order."""
        return [slot.values.step for slot in self.slots]
