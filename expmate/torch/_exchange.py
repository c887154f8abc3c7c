"""Running one sync point: build the rank's row, gather every rank's, agree or explain why not.

The row of a sync point is ``[state, closing, window, ride-along columns..., step rows...]``:
``state`` is 1.0 when the rank sends a batch (0.0 for a sync with nothing buffered), ``closing``
1.0 in a rank's final collective, ``window`` the batch's window; then one row of ``[fingerprint,
step, values...]`` per slot of the window (fingerprint 0.0 for a slot with no step). Every rank
gets the same matrix, so every rank draws the same conclusions from it: the reduced values of
the steps whose rows agree, the slow path (one ``all_gather_object``) for the others, the same
mismatch message, and the same decision about who is behind.

The row's width depends on settings each rank has of its own (``sync_every`` and the ride-along
columns, which ``system_metrics=`` adds), and gloo aborts a process whose collective receives
more than it expects. So before its first row a rank sends a row of fixed width that sums those
settings up (:func:`settings_row`); ranks that differ all end the reduction with the same
:class:`MetricMismatchError` naming each rank's settings, instead of a crash or a timeout.
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from expmate.reduction import Columns
from expmate.torch._batch import Job, Slot, host_values
from expmate.torch._layout import (
    EMPTY,
    HEADER,
    ColumnStats,
    Payload,
    agreed_ints,
    fill_row,
    format_ranks,
    format_steps,
    make_plan,
    metric_label,
    mismatch_lines,
    payload_matrix,
    reduce_columns,
)

T = TypeVar("T")

SENTINEL = -1.0
"""Fingerprint of a step whose layout is not agreed yet: its row cannot be read on the fast path."""

CONTROL = 3
"""Columns before the ride-along columns: state, closing, window."""

_PENDING_SHOWN = 20
_LINES_SHOWN = 20


class MetricMismatchError(RuntimeError):
    """Ranks logged different metrics (names, splits, reduce ops or steps) for one sync point.

    Raised with the same message on every rank; the values of the steps named are discarded.
    """


class SyncTimeoutError(RuntimeError):
    """A rank did not reach a sync point within the timeout (or left the job)."""


class TransportFailure(Exception):
    """A collective failed (timeout, a rank gone); carries the transport's error."""

    def __init__(self, cause: BaseException, mark: int) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.mark = mark
        """The arrival mark of the collective that failed."""


class Exchange:
    """Runs jobs over a transport: one collective per job, plus the slow path when needed.

    Args:
        transport: the collectives (with an optional arrival board: ``arrive``/``absent``).
        sync_every: slots per job.
        timeout: seconds (named in messages).
    """

    def __init__(self, transport: Any, *, sync_every: int, timeout: float) -> None:
        self.transport = transport
        self.sync_every = sync_every
        self.timeout = timeout
        self._buffer = array("d")
        self._wire = torch.empty(0, dtype=torch.float64)
        self._agreed = transport.world_size == 1
        """Whether the ranks' settings have been compared and found equal (one rank: nothing to
        compare)."""

    def run(self, job: Job) -> None:
        """Run ``job`` and fill in its results; never raises (a failure is kept in the job)."""
        try:
            values = host_values(job.slots, job.copy)
            if not self._agreed and not self._agree_settings(job):
                return
            row = self._row(job, values)
            matrix = self._collective(self.transport.all_gather, self._wire_of(row), 2 * job.seq)
            self._read(job, matrix, values)
        except TransportFailure as failure:
            job.failure = SyncTimeoutError(self._timeout_message(job, failure))
            job.failure.__cause__ = failure.cause
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread, raised there
            job.failure = exc

    # ------------------------------------------------------------------ the settings

    def _agree_settings(self, job: Job) -> bool:
        """Compare the ranks' settings before the first row (a collective of fixed width on
        every rank); when they differ, end the reduction with the same message everywhere."""
        mine = settings_row(self.sync_every, job.column_sets)
        matrix = self._collective(
            self.transport.all_gather, torch.tensor(mine, dtype=torch.float64), 2 * job.seq
        )
        if all(row == mine for row in matrix.tolist()):
            self._agreed = True
            return True
        described = self._collective(
            self.transport.all_gather_object,
            (self.sync_every, [(c.name, c.names, c.ops) for c in job.column_sets]),
            2 * job.seq + 1,
        )
        job.mismatch = settings_message(described)
        job.ended = True
        return False

    # ------------------------------------------------------------------ the row

    def _row(self, job: Job, values: list[list[Any]]) -> list[float]:
        control, stride = CONTROL + len(job.columns), HEADER + job.width
        row = [0.0] * (control + self.sync_every * stride)
        if job.window is not None:
            row[0], row[2] = 1.0, float(job.window)
        row[1] = 1.0 if job.closing else 0.0
        row[CONTROL:control] = job.columns
        for slot, slot_values in zip(job.slots, values, strict=True):
            base = control + slot.index * stride
            row[base] = slot.plan.layout.fingerprint if slot.known else SENTINEL
            row[base + 1] = float(slot.values.step)
            if slot.known:
                fill_row(row, slot.plan, slot_values, slot.values.weights, base)
        return row

    def _wire_of(self, row: list[float]) -> torch.Tensor:
        """The row as a float64 tensor over a reused host buffer (no tensor built per sync)."""
        if len(self._buffer) != len(row):
            self._buffer = array("d", row)
            self._wire = torch.frombuffer(self._buffer, dtype=torch.float64)
        else:
            self._buffer[:] = array("d", row)
        return self._wire

    def _collective(self, fn: Callable[[Any], T], arg: Any, mark: int) -> T:
        arrive = getattr(self.transport, "arrive", None)
        if arrive is not None:
            arrive(mark)
        try:
            return fn(arg)
        except RuntimeError as exc:
            raise TransportFailure(exc, mark) from exc

    # ------------------------------------------------------------------ the gathered matrix

    def _read(self, job: Job, matrix: torch.Tensor, values: list[list[Any]]) -> None:
        control, stride = CONTROL + len(job.columns), HEADER + job.width
        stats = ColumnStats(matrix)
        job.reduced_columns = [stats.reduce(op, CONTROL + i) for i, op in enumerate(job.column_ops)]
        mine = {slot.index: (slot, v) for slot, v in zip(job.slots, values, strict=True)}
        reduced: dict[int, list[tuple[Any, str, str, Any]]] = {}
        pending = []
        for index in range(self.sync_every):
            base = control + index * stride
            fingerprint = stats.max(base)
            if fingerprint == SENTINEL or not stats.agree(fingerprint, base):
                pending.append(index)
            elif fingerprint != EMPTY:
                slot = mine[index][0]
                job.remember.append(slot.plan.layout)
                reduced[index] = _rows(slot, reduce_columns(slot.plan, stats, base))
        failures: list[tuple[int, list[Payload]]] = []
        if pending:
            ours = {
                i: mine[i][0].values.payload(mine[i][1]) if i in mine else (None, [])
                for i in pending
            }
            gathered = self._collective(self.transport.all_gather_object, ours, 2 * job.seq + 1)
            for index in pending:
                payloads = [theirs[index] for theirs in gathered]
                if mismatch_lines(payloads):
                    failures.append((index, payloads))
                    continue
                slot = mine[index][0]
                agreed = make_plan(slot.plan.spec, ints=agreed_ints(payloads, slot.plan))
                job.remember.append(slot.plan.layout)
                stats_i = ColumnStats(payload_matrix(payloads, agreed))
                reduced[index] = _rows(slot, reduce_columns(agreed, stats_i))
        job.emits = [row for index in sorted(reduced) for row in reduced[index]]
        if failures or not all(stats.min(c) == stats.max(c) for c in range(CONTROL)):
            self._control(job, matrix[:, :CONTROL].tolist(), failures)

    def _control(self, job: Job, control: list[list[float]], failures: list[Any]) -> None:
        """Who is behind, who closed, and the mismatch message: the same on every rank (only
        needed when the ranks' control columns or steps differ)."""
        notes = []
        active = [(rank, row[2]) for rank, row in enumerate(control) if row[0]]
        windows = sorted({window for _, window in active})
        if len(windows) > 1:
            front = windows[-1]
            behind = [rank for rank, window in active if window < front]
            if job.window is not None and job.window < front:
                job.drop_through = front
            last = _number(front if self.sync_every == 1 else (front + 1) * self.sync_every - 1)
            notes.append(
                f"ranks {format_ranks(behind)} discard their metrics up to step {last}, so that "
                "the next sync point agrees again"
            )
        closing = [rank for rank, row in enumerate(control) if row[1]]
        if closing and len(closing) < len(control):
            still = [rank for rank, row in enumerate(control) if not row[1]]
            notes.append(
                f"ranks {format_ranks(closing)} closed their logger (the final sync of close()) "
                f"while ranks {format_ranks(still)} did not: no more metrics can be reduced in "
                "this job"
            )
            job.ended = True
        if failures or job.ended:
            job.mismatch = self._mismatch_message(failures, notes)

    def _mismatch_message(self, failures: list[tuple[int, list[Payload]]], notes: list[str]) -> str:
        steps = sorted({p[0] for _, payloads in failures for p in payloads if p[0] is not None})
        if steps:
            which = "that step" if len(steps) == 1 else "those steps"
            head = f"ranks logged different metrics for {format_steps(steps)}"
            tail = f" The values of {which} were discarded."
        else:
            head, tail = "ranks did not reach the same sync points", ""
        lines: list[str] = []
        for _, payloads in failures:
            found = mismatch_lines(payloads)
            common = {p[0] for p in payloads if p[1]}
            if self.sync_every > 1 and len(common) == 1:
                prefix = f"step {next(iter(common))}: "
                found = [line if line.startswith("different") else prefix + line for line in found]
            lines.extend(line for line in found if line not in lines)
        if len(lines) > _LINES_SHOWN:
            lines = [*lines[:_LINES_SHOWN], f"... and {len(lines) - _LINES_SHOWN} more"]
        body = "\n".join(f"  {line}" for line in [*lines, *notes])
        return (
            f"{head}; every rank must log the same metrics (split, name and reduce op) for a step "
            f"and reach sync()/flush()/close() at the same points.{tail}\n{body}"
        )

    def _timeout_message(self, job: Job, failure: TransportFailure) -> str:
        keys = sorted({(s, n) for slot in job.slots for s, n, _ in slot.values.specs})
        names = [metric_label(s, n) for s, n in keys]
        if len(names) > _PENDING_SHOWN:
            names = [*names[:_PENDING_SHOWN], f"... ({len(keys)} metrics)"]
        steps = job.steps
        where = format_steps(steps) if steps else "a sync with nothing buffered"
        absent_of = getattr(self.transport, "absent", None)
        rank = self.transport.rank
        absent = absent_of(failure.mark) if absent_of is not None else None
        absent = [r for r in absent or () if r != rank]
        who = f"ranks {format_ranks(absent)}" if absent else "another rank"
        return (
            f"metric sync on rank {rank} failed at {where} (pending metrics: "
            f"{', '.join(names) if names else 'none'}): {who} did not reach the sync point "
            f"within {self.timeout:g}s or left the job. Every rank must log the same steps and "
            f"call sync()/flush()/close() at the same points. Cause: "
            f"{str(failure.cause).strip()[:500]}"
        )


def settings_row(sync_every: int, column_sets: Sequence[Columns]) -> list[float]:
    """What fixes the width of a rank's row, as numbers of a fixed count: ``sync_every``, the
    number of ride-along columns, and a CRC-32 of their owners, names and ops (exact in
    float64)."""
    spec = repr([(c.name, c.names, c.ops) for c in column_sets]).encode()
    count = sum(len(c.names) for c in column_sets)
    return [float(sync_every), float(count), float(zlib.crc32(spec))]


def settings_message(
    described: Sequence[tuple[int, list[tuple[str, tuple[str, ...], Any]]]],
) -> str:
    """The error of ranks whose settings differ: each setting that differs, with its ranks."""
    lines = []
    every = [str(sync_every) for sync_every, _ in described]
    if len(set(every)) > 1:
        lines.append(f"sync_every: {_by_value(every)}")
    columns = [
        ", ".join(f"{name} ({len(names)})" for name, names, _ in sets) or "none"
        for _, sets in described
    ]
    if len(set(columns)) > 1:
        lines.append(f"ride-along columns (owner and count): {_by_value(columns)}")
    elif len({repr(sets) for _, sets in described}) > 1:
        lines.append("ride-along columns: the same owners and counts, different names or ops")
    body = "\n".join(f"  {line}" for line in lines)
    return (
        "ranks built their loggers with different reduction settings, so their metrics cannot "
        "be reduced together: every rank must pass the same sync_every= and system_metrics= to "
        "ExperimentLogger (system_metrics adds the 'system' columns to every collective). The "
        "values of this sync point were discarded and no more metrics can be reduced in this "
        f"job.\n{body}"
    )


def _by_value(values: Sequence[str]) -> str:
    """``1 on ranks [0, 2]; 10 on ranks [1]``, in order of first appearance."""
    ranks: dict[str, list[int]] = {}
    for rank, value in enumerate(values):
        ranks.setdefault(value, []).append(rank)
    return "; ".join(f"{value} on ranks {format_ranks(r)}" for value, r in ranks.items())


def _rows(slot: Slot, reduced: list[Any]) -> list[tuple[Any, str, str, Any]]:
    """``(step, split, name, value)`` of each reduced value of a slot, in the order added."""
    step = slot.values.step
    return [
        (step, split, name, value)
        for (split, name, _), value in zip(slot.plan.spec, reduced, strict=True)
    ]


def _number(value: float) -> Any:
    return int(value) if float(value).is_integer() else value
