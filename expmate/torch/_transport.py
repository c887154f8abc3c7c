"""How a metric reducer talks to the other ranks: a gloo group of its own, or nothing at all.

The transport is a replaceable piece: anything with ``rank``, ``world_size``, ``all_gather``,
``all_gather_object`` and ``close`` will do (the tests use an in-memory double).
"""

from __future__ import annotations

import contextlib
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


class GlooTransport:
    """Collectives on a gloo group of all ranks with its own timeout.

    Creating it is a collective (``dist.new_group``): every rank must create it at the same point.
    A group of its own keeps metric traffic off the training (NCCL) stream and bounds how long a
    rank that never arrives can block the others.
    """

    def __init__(self, timeout: float) -> None:
        self.group = dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout))
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self._gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        self._out: torch.Tensor | None = None

    def all_gather(self, row: torch.Tensor) -> torch.Tensor:
        size = self.world_size * row.numel()
        if self._out is None or self._out.numel() != size:
            self._out = torch.empty(size, dtype=torch.float64)
        self._gather(self._out, row, group=self.group)
        return self._out.view(self.world_size, -1)

    def all_gather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def close(self) -> None:
        if dist.is_initialized():
            # Already gone when the default group was destroyed first.
            with contextlib.suppress(RuntimeError, ValueError):
                dist.destroy_process_group(self.group)


def default_transport(timeout: float) -> Transport:
    """A :class:`GlooTransport` when a process group of more than one rank exists, else local."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return GlooTransport(timeout)
    return LocalTransport()
