"""How a metric reducer talks to the other ranks: a gloo group of its own, or nothing at all.

The transport is a replaceable piece: anything with ``rank``, ``world_size``, ``all_gather``,
``all_gather_object`` and ``close`` will do (the tests use an in-memory double). A transport may
also keep an *arrival board* (``arrive(seq)``, ``absent(seq)``) so that a collective that times
out can name the ranks that never reached it; :class:`GlooTransport` keeps it in the process
group's store.

gloo's own ``all_gather`` is a ring: W - 1 hops one after the other. From 4 ranks on
:class:`GlooTransport` gathers with Bruck's algorithm instead (:func:`bruck_all_gather`):
ceil(log2 W) rounds of one send and one receive per rank, 3 instead of 7 at 8 ranks, 9 instead of
511 at 512. The rows are a few hundred bytes, so the rounds, not the bytes, are the cost.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

import torch
import torch.distributed as dist


class Transport(Protocol):
    """The collectives a reducer needs; replaceable (tests use an in-memory double)."""

    rank: int
    world_size: int

    def all_gather(self, row: torch.Tensor) -> torch.Tensor:
        """Gather one 1-D float64 CPU row from every rank into a ``(world_size, len)`` matrix."""
        ...

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Gather one picklable object from every rank, in rank order."""
        ...

    def close(self) -> None:
        """Release what the transport holds."""
        ...


class LocalTransport:
    """The transport of a job with one process: no collective at all."""

    rank = 0
    world_size = 1

    def all_gather(self, row: torch.Tensor) -> torch.Tensor:
        return row.reshape(1, -1)

    def all_gather_object(self, obj: Any) -> list[Any]:
        return [obj]

    def close(self) -> None:
        pass


_boards = itertools.count()  # one board per transport, created at the same points on every rank

BRUCK_FROM = 4
"""From this many ranks on, Bruck's rounds are fewer than the ring's hops."""

Exchange = Callable[[torch.Tensor, int, int], torch.Tensor]
"""``exchange(rows, to, source)``: send ``rows`` to rank ``to`` and return as many rows received
from rank ``source`` (both at once)."""


def bruck_all_gather(row: torch.Tensor, rank: int, world: int, exchange: Exchange) -> torch.Tensor:
    """Every rank's ``row`` as a ``(world, len)`` matrix in rank order, in ceil(log2 world)
    rounds (Bruck's algorithm; any number of ranks).

    In round k a rank sends the first ``min(2**k, world - have)`` rows it holds (its own first,
    then those of the ranks after it) to rank ``rank - 2**k`` and receives as many from rank
    ``rank + 2**k``; after the last round it holds every row, rotated by its rank.
    """
    rows = torch.empty(world, row.numel(), dtype=row.dtype)
    rows[0] = row
    have, distance = 1, 1
    while have < world:
        count = min(distance, world - have)
        rows[have : have + count] = exchange(
            rows[:count], (rank - distance) % world, (rank + distance) % world
        )
        have += count
        distance *= 2
    return torch.roll(rows, rank, dims=0)


class GlooTransport:
    """Collectives on a gloo group of all ranks with its own timeout; counts what it sends.

    Creating it is a collective (``dist.new_group``): every rank must create it at the same point.
    A group of its own keeps metric traffic off the training (NCCL) stream and bounds how long a
    rank that never arrives can block the others. Before each collective a rank writes the
    collective's number under its own key of the default group's store (one small write, no
    reply awaited), so that a rank whose collective times out can tell who never arrived.

    Args:
        timeout: seconds a collective waits for the other ranks.
        bruck_from: gather in Bruck's rounds from this many ranks on (else gloo's ring).

    Attributes:
        counts: collectives made so far: ``{"all_gather": n, "all_gather_object": m}``.
    """

    def __init__(self, timeout: float, *, bruck_from: int = BRUCK_FROM) -> None:
        self.group = dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout))
        self.bruck_from = bruck_from
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.counts = {"all_gather": 0, "all_gather_object": 0}
        self._gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        self._out: torch.Tensor | None = None
        self._board = _board(next(_boards), self.rank)

    def all_gather(self, row: torch.Tensor) -> torch.Tensor:
        self.counts["all_gather"] += 1
        if self.world_size >= self.bruck_from:
            return bruck_all_gather(row, self.rank, self.world_size, self._exchange)
        size = self.world_size * row.numel()
        if self._out is None or self._out.numel() != size:
            self._out = torch.empty(size, dtype=torch.float64)
        self._gather(self._out, row, group=self.group)
        return self._out.view(self.world_size, -1)

    def _exchange(self, rows: torch.Tensor, to: int, source: int) -> torch.Tensor:
        received = torch.empty_like(rows)
        works = [
            dist.isend(rows.contiguous(), to, group=self.group),
            dist.irecv(received, source, group=self.group),
        ]
        for work in works:
            if work is not None:
                work.wait()
        return received

    def all_gather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        self.counts["all_gather_object"] += 1
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def arrive(self, seq: int) -> None:
        """Note on the board that this rank has reached collective number ``seq``."""
        if self._board is not None:
            with contextlib.suppress(RuntimeError):  # a store that is gone only costs the names
                self._board.set(str(self.rank), str(seq))

    def absent(self, seq: int) -> list[int] | None:
        """The ranks that have not noted collective ``seq`` (None when the board is unreadable)."""
        if self._board is None:
            return None
        missing = []
        try:
            for rank in range(self.world_size):
                key = str(rank)
                if not self._board.check([key]) or int(self._board.get(key)) < seq:
                    missing.append(rank)
        except (RuntimeError, ValueError):
            return None
        return missing

    def close(self) -> None:
        if dist.is_initialized():
            # Already gone when the default group was destroyed first.
            with contextlib.suppress(RuntimeError, ValueError):
                dist.destroy_process_group(self.group)


def _board(index: int, rank: int) -> dist.Store | None:
    """This transport's arrival board: a prefix of the default group's store (None without one)."""
    try:
        store = dist.distributed_c10d._get_default_store()
        board = dist.PrefixStore(f"expmate/reduce/{index}/arrived", store)
        board.set(str(rank), "-1")
    except (RuntimeError, ValueError, AttributeError):
        return None
    return board


def default_transport(timeout: float) -> Transport:
    """A :class:`GlooTransport` when a process group of more than one rank exists, else local."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return GlooTransport(timeout)
    return LocalTransport()
