"""How the logger combines metric values across ranks: the interface it calls, and one process's.

The core never imports ``expmate.torch``. It calls a :class:`Reduction`: in one process a
:class:`LocalReduction` (every value is its own reduction, nothing is exchanged); under torchrun the
distributed one that ``expmate.torch`` registers with :func:`register_distributed` when it is
imported, and that the logger asks for with :func:`distributed_reduction`.

Ride-along columns (:class:`Columns`) are a few named numbers that a component wants combined
across ranks without a collective of its own: the distributed reduction sends their current values
in every collective it makes anyway and hands the reduced values (``max``, ``min`` or ``sum`` over
ranks) to a callback on every rank after each sync. :class:`LocalReduction` hands them straight
back on each :meth:`Columns.update`. The logger's agreed stop is one such column.

Example:
    >>> seen = []
    >>> local = LocalReduction(lambda step, split, name, value: seen.append((step, name, value)))
    >>> local.add(3, "val", "loss", 0.5, "mean", 1.0)
    >>> seen
    [(3, 'loss', 0.5)]
    >>> stop = Columns("stop", {"requested": "max"}, lambda values: seen.append(values))
    >>> local.add_columns(stop)
    >>> stop.update({"requested": 1.0})
    >>> seen[-1]
    {'requested': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

COLUMN_OPS = ("max", "min", "sum")
"""How a ride-along column is combined across ranks."""

Emit = Callable[[int, str, str, Any], None]
"""``emit(step, split, name, value)``: called with each reduced value (on every rank)."""


class Columns:
    """Named numbers that travel in every collective of the reduction they are added to.

    Every rank must create the same columns (names and ops, in the same order) and add them at
    the same point (when the logger is built), since they widen the row that every rank sends.

    Args:
        name: who owns the columns (named in messages).
        ops: column name -> ``max``, ``min`` or ``sum``, in a fixed order.
        on_reduced: called with ``{column: reduced value}`` after each sync, on every rank, from
            the thread that reached the sync point (under :class:`LocalReduction`: from the
            thread that called :meth:`update`, at once). It must not raise or block.

    Raises:
        TypeError, ValueError: an empty name, no columns, or an op that is not max/min/sum.
    """

    def __init__(
        self, name: str, ops: Mapping[str, str], on_reduced: Callable[[dict[str, float]], None]
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"columns need a non-empty name, not {name!r}")
        if not isinstance(ops, Mapping) or not ops:
            raise ValueError(f"columns {name!r} need at least one column: a mapping name -> op")
        for column, op in ops.items():
            if not isinstance(column, str) or not column:
                raise ValueError(f"column names of {name!r} must be non-empty strings: {column!r}")
            if op not in COLUMN_OPS:
                raise ValueError(
                    f"column {column!r} of {name!r}: op must be one of "
                    f"{', '.join(COLUMN_OPS)}, not {op!r}"
                )
        if not callable(on_reduced):
            raise TypeError(f"on_reduced of columns {name!r} must be callable")
        self.name = name
        self.names: tuple[str, ...] = tuple(ops)
        self.ops: tuple[str, ...] = tuple(ops.values())
        self.on_reduced = on_reduced
        self._values = [0.0] * len(self.names)
        self._index = {column: i for i, column in enumerate(self.names)}
        self._immediate = False

    def update(self, values: Mapping[str, float]) -> None:
        """Set the current value of some columns (the others keep theirs; all start at 0.0).

        Safe from any thread and from a signal handler (it only stores numbers, unless the
        columns were added to a :class:`LocalReduction`, which calls ``on_reduced`` at once).
        The values of one call are replaced together: a collective sends all of them or none.

        Raises:
            ValueError: a column name that was not declared, or a value that is not finite
                (nothing is changed).
        """
        updated = list(self._values)
        for column, value in values.items():
            at = self._index.get(column)
            if at is None:
                raise ValueError(f"columns {self.name!r} have no column {column!r}")
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"column {column!r} of {self.name!r} must be finite: {value!r}")
            updated[at] = number
        self._values = updated  # one store: a reader sees the old values or the new ones
        if self._immediate:
            self.deliver(self._values)

    def current(self) -> list[float]:
        """The current values, in declaration order (what a collective sends)."""
        return list(self._values)

    def deliver(self, reduced: list[float]) -> None:
        """Hand reduced values (in declaration order) to ``on_reduced``."""
        self.on_reduced(dict(zip(self.names, reduced, strict=True)))

    def deliver_at_once(self) -> None:
        """From now on each :meth:`update` is handed straight back (a reduction of one rank)."""
        self._immediate = True


class Reduction(Protocol):
    """What the logger calls to reduce metric values across ranks.

    ``add`` buffers a value; a *sync point* (decided by the implementation from the step of the
    values, or :meth:`sync`, :meth:`close`) reduces what is buffered and hands each reduced value
    to the ``emit`` callback the reduction was built with, on every rank (possibly from a thread
    of the reduction's own, as soon as the values are known).
    """

    def add(self, step: int, split: str, name: str, value: Any, op: str, weight: float) -> None:
        """Buffer one local value (may be a sync point, which may raise an earlier error)."""
        ...

    def sync(self) -> None:
        """A sync point now that also waits until everything buffered has been emitted."""
        ...

    def wait(self) -> None:
        """Wait until a sync in progress has emitted its values (no communication, no errors)."""
        ...

    def close(self) -> None:
        """The final sync (every rank calls it), then release what the reduction holds."""
        ...

    def abandon(self) -> None:
        """Release without a final sync (the other ranks may not be there to join one)."""
        ...

    def add_columns(self, columns: Columns) -> None:
        """Send ``columns`` in every collective from the next one on (see :class:`Columns`)."""
        ...


class LocalReduction:
    """The reduction of a job of one process: each value is its own reduction, emitted at once.

    Weights do not matter (a mean of one value is that value); ride-along columns are handed
    straight back on each update.
    """

    world_size = 1

    def __init__(self, emit: Emit) -> None:
        self._emit = emit

    def add(self, step: int, split: str, name: str, value: Any, op: str, weight: float) -> None:
        self._emit(step, split, name, value)

    def sync(self) -> None:
        pass

    def wait(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abandon(self) -> None:
        pass

    def add_columns(self, columns: Columns) -> None:
        columns.deliver_at_once()


class DistributedFactory(Protocol):
    """Builds the distributed reduction: a collective, every rank calls it at the same point."""

    def __call__(self, emit: Emit, *, timeout: float, sync_every: int) -> Reduction: ...


_distributed: DistributedFactory | None = None


def register_distributed(factory: DistributedFactory | None) -> None:
    """Make ``factory`` the distributed reduction (``expmate.torch`` registers its own)."""
    global _distributed
    _distributed = factory


def distributed_reduction(emit: Emit, *, timeout: float, sync_every: int) -> Reduction:
    """The registered distributed reduction (a collective: every rank must call it alike).

    Raises:
        RuntimeError: no distributed reduction is registered (``expmate.torch`` not imported).
    """
    if _distributed is None:
        raise RuntimeError(
            "metrics are reduced across ranks by expmate.torch, which is not imported: "
            "`import expmate.torch` (expmate.torch.mp.setup_ddp() does) before creating the "
            "logger or logging reduced metrics"
        )
    return _distributed(emit, timeout=timeout, sync_every=sync_every)
