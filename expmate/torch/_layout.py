"""The pieces of metric reduction that need no process group: layouts, fingerprints, reduction
of gathered contributions, and the mismatch report.

A *layout* is the sorted set of ``(split, name, op)`` keys of one step, with which of its
``sum``/``min``/``max`` metrics hold integers. Each metric occupies one column of the wire row
(``sum``, ``min``, ``max``: the value) or two (``mean``: ``value * weight`` and ``weight``), so a
true global mean is ``sum(value * weight) / sum(weight)``. A row starts with a header of two
columns, the layout's fingerprint and the step; a sync point sends one such row per step.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from expmate.values import REDUCE_OPS

OPS = REDUCE_OPS

MetricKey = tuple[str, str, str]
"""``(split, name, op)``."""

Payload = tuple[Any, list[tuple[str, str, str, float, float, bool]]]
"""What one rank sends on the slow path for one step:
``(step, [(split, name, op, value, weight, is_int), ...])``; ``(None, [])`` for no step."""

HEADER = 2
"""Columns before a step's values: fingerprint, step."""

EMPTY = 0.0
"""The fingerprint of a row that holds no step."""

_MAX_RANKS_SHOWN = 8
_MAX_LINES_SHOWN = 20


def fingerprint(keys: tuple[MetricKey, ...], ints: tuple[bool, ...] = ()) -> float:
    """A 48-bit hash of a key set (and which of its metrics hold integers), exact as a float64
    (so it can travel in the wire row); never :data:`EMPTY` and never negative."""
    digest = hashlib.blake2b(repr((keys, ints)).encode(), digest_size=6).digest()
    return float(int.from_bytes(digest, "big") % (2**48 - 1) + 1)


@dataclass(frozen=True)
class Layout:
    """Where each metric of one key set sits in a step's row, after the header."""

    keys: tuple[MetricKey, ...]
    ints: tuple[bool, ...]
    """Per key: a sum/min/max whose value is an integer (means are never marked)."""
    fingerprint: float
    width: int
    offsets: dict[tuple[str, str], int] = field(compare=False)

    @property
    def ident(self) -> tuple[tuple[MetricKey, ...], tuple[bool, ...]]:
        """What tells layouts apart: the keys and their integer marks."""
        return self.keys, self.ints


def make_layout(keys: tuple[MetricKey, ...], ints: tuple[bool, ...] | None = None) -> Layout:
    """Build the layout of a sorted key set (``ints`` aligned with it; default: no integers)."""
    offsets: dict[tuple[str, str], int] = {}
    width = 0
    for split, name, op in keys:
        offsets[(split, name)] = width
        width += 2 if op == "mean" else 1
    marks = ints if ints is not None else (False,) * len(keys)
    return Layout(keys, marks, fingerprint(keys, marks), width, offsets)


@dataclass(frozen=True)
class Plan:
    """How one rank's buffer, in the order its metrics were added, maps onto a layout.

    Built once per distinct order of keys, so that a steady-state sync does no sorting.
    """

    spec: tuple[MetricKey, ...]
    ints: tuple[bool, ...]
    """Per buffered metric: a sum/min/max whose value is an integer."""
    layout: Layout
    columns: tuple[int, ...]
    """Column of each buffered metric in the step's row, header included."""


def make_plan(
    spec: tuple[MetricKey, ...], header: int = HEADER, ints: tuple[bool, ...] | None = None
) -> Plan:
    """The plan of a buffer whose keys (each ``(split, name)`` once) were added in the order
    ``spec``; ``ints`` marks the values that are integers (ignored for means)."""
    marks = ints if ints is not None else (False,) * len(spec)
    marks = tuple(m and op != "mean" for (_, _, op), m in zip(spec, marks, strict=True))
    order = sorted(range(len(spec)), key=spec.__getitem__)
    layout = make_layout(tuple(spec[i] for i in order), tuple(marks[i] for i in order))
    columns = tuple(header + layout.offsets[(split, name)] for split, name, _ in spec)
    return Plan(spec, marks, layout, columns)


def fill_row(
    row: list[float],
    plan: Plan,
    values: Sequence[Any],
    weights: Sequence[float],
    base: int = 0,
) -> None:
    """Write one rank's contributions for one step into its wire row, from column ``base``
    (mean: ``value * weight``, ``weight``)."""
    for (_, _, op), col, value, weight in zip(
        plan.spec, plan.columns, values, weights, strict=True
    ):
        if op == "mean":
            row[base + col] = value * weight
            row[base + col + 1] = weight
        else:
            row[base + col] = value


_TORCH_STATS_FROM = 33  # more ranks than this: column statistics in torch, not Python


class ColumnStats:
    """Sum, min and max of the columns of a gathered ``(world_size, width)`` float64 matrix.

    Every rank holds the same matrix and runs the same operations, so every rank gets the same
    floats. Small jobs compute only the columns asked for, in Python and in rank order (cheaper
    than torch dispatch for a few numbers); large ones reduce all columns at once in torch.
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        self._columns: list[tuple[float, ...]] | None = None
        if matrix.shape[0] < _TORCH_STATS_FROM:
            self._columns = list(zip(*matrix.tolist(), strict=True))
            return
        low, high = torch.aminmax(matrix, dim=0)
        self._sums, self._mins, self._maxs = matrix.sum(0).tolist(), low.tolist(), high.tolist()

    def sum(self, col: int) -> float:
        return sum(self._columns[col]) if self._columns is not None else self._sums[col]

    def min(self, col: int) -> float:
        if self._columns is None:
            return self._mins[col]
        return _nan_or(min, self._columns[col])

    def max(self, col: int) -> float:
        if self._columns is None:
            return self._maxs[col]
        return _nan_or(max, self._columns[col])

    def agree(self, fingerprint: float, base: int = 0) -> bool:
        """True when every rank sent ``fingerprint`` (column ``base``) and the same step (the
        column after it)."""
        return self.min(base) == self.max(base) == fingerprint and self.min(base + 1) == self.max(
            base + 1
        )

    def reduce(self, op: str, col: int) -> float:
        """Column ``col`` reduced with ``max``, ``min`` or ``sum``."""
        if op == "max":
            return self.max(col)
        return self.min(col) if op == "min" else self.sum(col)


def _nan_or(pick: Callable[[tuple[float, ...]], float], column: tuple[float, ...]) -> float:
    """``pick(column)``, but NaN when any value is NaN, whatever its rank (as torch.amin/amax)."""
    total = sum(column)
    if total != total and any(x != x for x in column):
        return math.nan
    return pick(column)


def reduce_columns(plan: Plan, stats: ColumnStats, base: int = 0) -> list[float | int]:
    """The reduced value of each buffered metric, in the order of ``plan.spec``.

    A mean whose weights sum to 0 is NaN. A sum, min or max of integers (``plan.ints``) is an int.
    """
    out: list[float | int] = []
    for (_, _, op), col, whole in zip(plan.spec, plan.columns, plan.ints, strict=True):
        at = base + col
        if op == "mean":
            total = stats.sum(at + 1)
            out.append(stats.sum(at) / total if total else math.nan)
            continue
        value = stats.reduce(op, at)
        out.append(int(value) if whole and math.isfinite(value) else value)
    return out


def payload_matrix(payloads: Sequence[Payload], plan: Plan, header: int = HEADER) -> torch.Tensor:
    """The wire matrix of agreeing slow-path payloads for one step, as if sent on the fast path."""
    rows = []
    for step, metrics in payloads:
        row = [0.0] * (header + plan.layout.width)
        row[1] = float(step) if step is not None else 0.0
        by_key = {(m[0], m[1]): (m[3], m[4]) for m in metrics}
        pairs = [by_key[(split, name)] for split, name, _ in plan.spec]
        fill_row(row, plan, [v for v, _ in pairs], [w for _, w in pairs])
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).reshape(len(payloads), -1)


def agreed_ints(payloads: Sequence[Payload], plan: Plan) -> tuple[bool, ...]:
    """Per metric of ``plan.spec``: an integer on every rank (so its reduction stays one)."""
    whole = {(m[0], m[1]) for m in payloads[0][1] if m[5]}
    for _, metrics in payloads[1:]:
        whole &= {(m[0], m[1]) for m in metrics if m[5]}
    return tuple((split, name) in whole for split, name, _ in plan.spec)


def format_steps(steps: Sequence[Any]) -> str:
    """``step 5``, ``steps 2, 3``, or ``steps 20 to 39 (20 steps)`` for many."""
    if len(steps) == 1:
        return f"step {steps[0]}"
    if len(steps) <= 4:
        return "steps " + ", ".join(map(str, steps))
    return f"steps {steps[0]} to {steps[-1]} ({len(steps)} steps)"


def format_ranks(ranks: Sequence[int]) -> str:
    """``[0, 2, 3]``, shortened for large jobs: ``[0, 1, ..., 7] (512 ranks)``."""
    if len(ranks) <= _MAX_RANKS_SHOWN:
        return "[" + ", ".join(map(str, ranks)) + "]"
    head = ", ".join(map(str, ranks[: _MAX_RANKS_SHOWN - 1]))
    return f"[{head}, ..., {ranks[-1]}] ({len(ranks)} ranks)"


def metric_label(split: str, name: str) -> str:
    """How a metric is named in messages: ``val/loss``."""
    return f"{split}/{name}"


def mismatch_lines(payloads: Sequence[Payload]) -> list[str]:
    """How the ranks' payloads for one step disagree, one line per difference (none: agree).

    The text depends on the gathered payloads only, so every rank builds the same lines.
    """
    world = len(payloads)
    per_key: dict[tuple[str, str], dict[str, list[int]]] = {}
    for rank, (_, metrics) in enumerate(payloads):
        for split, name, op, *_ in metrics:
            per_key.setdefault((split, name), {}).setdefault(op, []).append(rank)
    lines = [_key_line(key, ops, world) for key, ops in sorted(per_key.items())]
    lines = [line for line in lines if line]
    steps: dict[str, list[int]] = {}
    for rank, (step, metrics) in enumerate(payloads):
        if metrics:
            steps.setdefault(repr(step), []).append(rank)
    if len(steps) > 1:
        shown = "; ".join(f"step {s} on ranks {format_ranks(r)}" for s, r in steps.items())
        lines.insert(0, f"different steps: {shown}")
    return lines


def mismatch_report(payloads: Sequence[Payload]) -> str | None:
    """The lines of :func:`mismatch_lines` indented as in an error message, or None."""
    lines = mismatch_lines(payloads)
    if not lines:
        return None
    if len(lines) > _MAX_LINES_SHOWN:
        lines = [*lines[:_MAX_LINES_SHOWN], f"... and {len(lines) - _MAX_LINES_SHOWN} more"]
    return "\n".join(f"  {line}" for line in lines)


def _key_line(key: tuple[str, str], ops: dict[str, list[int]], world: int) -> str:
    parts = []
    if len(ops) > 1:
        parts.append(
            "; ".join(f"reduce={op!r} on ranks {format_ranks(r)}" for op, r in ops.items())
        )
    have = sorted(r for ranks in ops.values() for r in ranks)
    if len(have) < world:
        missing = sorted(set(range(world)) - set(have))
        parts.append(
            f"logged by ranks {format_ranks(have)}, missing on ranks {format_ranks(missing)}"
        )
    return f"{metric_label(*key)}: {'; '.join(parts)}" if parts else ""
