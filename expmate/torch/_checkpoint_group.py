"""The collectives of a checkpoint manager: a gloo group of its own, or none in a single process.

Only small Python objects travel (steps, random number generator states, decisions, the list of
checkpoints); tensors never do. A group of its own keeps this traffic off the training (NCCL)
stream and gives it a timeout that covers a long write by rank 0.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

from expmate.torch._transport import GlooTransport, default_transport


class CheckpointSyncError(RuntimeError):
    """A rank did not reach a checkpoint collective in time (or left the job)."""


class CheckpointGroup:
    """Broadcast, gather and all-gather of objects among all ranks (nothing to do for one rank).

    Creating it is a collective when a process group of several ranks exists.

    Args:
        timeout: seconds a rank waits for the others at a collective.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._transport = default_transport(timeout)
        self.rank = self._transport.rank
        self.world_size = self._transport.world_size
        self.group: Any = (
            self._transport.group if isinstance(self._transport, GlooTransport) else None
        )

    def _failed(self, what: str, exc: BaseException) -> CheckpointSyncError:
        return CheckpointSyncError(
            f"checkpoint {what} failed on rank {self.rank}: another rank did not reach it within "
            f"{self.timeout:g}s or left the job. Every rank must call every CheckpointManager "
            f"method at the same point. Cause: {str(exc).strip()[:500]}"
        )

    def broadcast(self, obj: Any, what: str) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.group is None:
            return obj
        box = [obj]
        try:
            dist.broadcast_object_list(box, src=0, group=self.group)
        except RuntimeError as exc:
            raise self._failed(what, exc) from exc
        return box[0]

    def gather(self, obj: Any, what: str) -> list[Any] | None:
        """Every rank's ``obj`` in rank order on rank 0; None on the others."""
        if self.group is None:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        try:
            dist.gather_object(obj, out, dst=0, group=self.group)
        except RuntimeError as exc:
            raise self._failed(what, exc) from exc
        return out

    def all_gather(self, obj: Any, what: str) -> list[Any]:
        """Every rank's ``obj`` in rank order, on every rank."""
        try:
            return self._transport.all_gather_object(obj)
        except RuntimeError as exc:
            raise self._failed(what, exc) from exc

    def close(self) -> None:
        """Release the group."""
        self._transport.close()
