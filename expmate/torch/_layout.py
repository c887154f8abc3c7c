"""The pieces of metric reduction that need no process group: layouts, fingerprints, reduction
of gathered contributions, and the mismatch report.

A *layout* is the sorted set of ``(split, name, op)`` keys of one sync point. Each metric occupies
one column of the wire row (``sum``, ``min``, ``max``: the value) or two (``mean``: ``value *
weight`` and ``weight``), so a true global mean is ``sum(value * weight) / sum(weight)``.
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

Payload = tuple[Any, list[tuple[str, str, str, float, float]]]
"""What one rank sends on the slow path: ``(step, [(split, name, op, value, weight), ...])``."""

_MAX_RANKS_SHOWN = 8
_MAX_LINES_SHOWN = 20


def fingerprint(keys: tuple[MetricKey, ...]) -> float:
    """A 48-bit hash of a key set, exact as a float64 (so it can travel in the wire row)."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=6).digest()
    return float(int.from_bytes(digest, "big"))


@dataclass(frozen=True)
class Layout:
    """Where each metric of one key set sits in the wire row, after the header."""

    keys: tuple[MetricKey, ...]
    fingerprint: float
    width: int
    offsets: dict[tuple[str, str], int] = field(compare=False)


def make_layout(keys: tuple[MetricKey, ...]) -> Layout:
    """Build the layout of a sorted key set."""
    offsets: dict[tuple[str, str], int] = {}
    width = 0
    for split, name, op in keys:
        offsets[(split, name)] = width
        width += 2 if op == "mean" else 1
    return Layout(keys, fingerprint(keys), width, offsets)


@dataclass(frozen=True)
class Plan:
    """How one rank's buffer, in the order its metrics were added, maps onto a layout.

    Built once per distinct order of keys, so that a steady-state sync does no sorting.
    """

    spec: tuple[MetricKey, ...]
    layout: Layout
    columns: tuple[int, ...]
    """Column of each buffered metric in the row, header included."""


def make_plan(spec: tuple[MetricKey, ...], header: int) -> Plan:
    """The plan of a buffer whose keys were added in the order ``spec``."""
    layout = make_layout(tuple(sorted(spec)))
    columns = tuple(header + layout.offsets[(split, name)] for split, name, _ in spec)
    return Plan(spec, layout, columns)


def fill_row(row: list[float], plan: Plan, values: Sequence[Any], weights: Sequence[float]) -> None:
    """Write one rank's contributions into its wire row (mean: ``value * weight``, ``weight``)."""
    for (_, _, op), col, value, weight in zip(
        plan.spec, plan.columns, values, weights, strict=True
    ):
        if op == "mean":
            row[col] = value * weight
            row[col + 1] = weight
        else:
            row[col] = value


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

    def agree(self, fingerprint: float) -> bool:
        """True when every rank sent ``fingerprint`` (column 0) and the same step (column 1)."""
        return self.min(0) == self.max(0) == fingerprint and self.min(1) == self.max(1)


def _nan_or(pick: Callable[[tuple[float, ...]], float], column: tuple[float, ...]) -> float:
    """``pick(column)``, but NaN when any value is NaN, whatever its rank (as torch.amin/amax)."""
    total = sum(column)
    if total != total and any(x != x for x in column):
        return math.nan
    return pick(column)


def reduce_columns(plan: Plan, stats: ColumnStats) -> list[float]:
    """The reduced value of each buffered metric, in the order of ``plan.spec``.

    A mean whose weights sum to 0 is NaN.
    """
    out: list[float] = []
    for (_, _, op), col in zip(plan.spec, plan.columns, strict=True):
        if op == "mean":
            total = stats.sum(col + 1)
            out.append(stats.sum(col) / total if total else math.nan)
        elif op == "sum":
            out.append(stats.sum(col))
        elif op == "min":
            out.append(stats.min(col))
        else:
            out.append(stats.max(col))
    return out


def payload_matrix(payloads: Sequence[Payload], plan: Plan, header: int) -> torch.Tensor:
    """The wire matrix of agreeing slow-path payloads, as if sent on the fast path."""
    rows = []
    for step, metrics in payloads:
        row = [0.0] * (header + plan.layout.width)
        row[1] = float(step) if step is not None else 0.0
        by_key = {(split, name): (value, weight) for split, name, _, value, weight in metrics}
        pairs = [by_key[(split, name)] for split, name, _ in plan.spec]
        fill_row(row, plan, [v for v, _ in pairs], [w for _, w in pairs])
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).reshape(len(payloads), -1)


def format_ranks(ranks: Sequence[int]) -> str:
    """``[0, 2, 3]``, shortened for large jobs: ``[0, 1, ..., 7] (512 ranks)``."""
    if len(ranks) <= _MAX_RANKS_SHOWN:
        return "[" + ", ".join(map(str, ranks)) + "]"
    head = ", ".join(map(str, ranks[: _MAX_RANKS_SHOWN - 1]))
    return f"[{head}, ..., {ranks[-1]}] ({len(ranks)} ranks)"


def metric_label(split: str, name: str) -> str:
    """How a metric is named in messages: ``val/loss``."""
    return f"{split}/{name}"


def mismatch_report(payloads: Sequence[Payload]) -> str | None:
    """Describe how the ranks' payloads disagree, or None when they agree.

    The text depends on the gathered payloads only, so every rank builds the same message.
    """
    world = len(payloads)
    per_key: dict[tuple[str, str], dict[str, list[int]]] = {}
    for rank, (_, metrics) in enumerate(payloads):
        for split, name, op, _, _ in metrics:
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
