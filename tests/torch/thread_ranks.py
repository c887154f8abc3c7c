"""In-memory ranks for reducer tests: one thread a rank, a transport double that counts.

The double behaves as the gloo transport does where the reducer can tell: every rank's row in
rank order, a collective that a rank never reaches fails the others after the timeout with a
RuntimeError, and an arrival board names who did not arrive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from expmate.torch.reduce import MetricReducer


class Hub:
    """What the in-memory ranks share: one slot each, a barrier and the arrival board."""

    def __init__(self, world: int, timeout: float = 10.0) -> None:
        self.world = world
        self.barrier = threading.Barrier(world, timeout=timeout)
        self.slots: list[Any] = [None] * world
        self.board: dict[int, int] = {}


class ThreadTransport:
    """An in-memory double of the gloo transport: one thread a rank, counting collectives."""

    def __init__(self, hub: Hub, rank: int, *, board: bool = False) -> None:
        self.hub = hub
        self.rank = rank
        self.world_size = hub.world
        self.calls: list[str] = []
        if board:
            self.arrive = self._arrive
            self.absent = self._absent

    def _exchange(self, item: Any) -> list[Any]:
        try:
            self.hub.slots[self.rank] = item
            self.hub.barrier.wait()
            out = list(self.hub.slots)
            self.hub.barrier.wait()
        except threading.BrokenBarrierError:
            raise RuntimeError("Timed out waiting for the other ranks (in-memory)") from None
        return out

    def all_gather(self, row: torch.Tensor) -> torch.Tensor:
        self.calls.append("all_gather")
        return torch.stack(self._exchange(row.clone()))

    def all_gather_object(self, obj: Any) -> list[Any]:
        self.calls.append("all_gather_object")
        return self._exchange(obj)

    def close(self) -> None:
        self.calls.append("close")

    def _arrive(self, seq: int) -> None:
        self.hub.board[self.rank] = seq

    def _absent(self, seq: int) -> list[int]:
        return [r for r in range(self.world_size) if self.hub.board.get(r, -1) < seq]


Body = Callable[[int, MetricReducer], None]


def run_ranks(
    world: int,
    body: Body,
    *,
    sync_every: int = 1,
    timeout: float = 10.0,
    board: bool = False,
    blocking: bool = False,
) -> list[dict[str, Any]]:
    """Run ``body(rank, reducer)`` on ``world`` threads; return per rank what was emitted and
    the RuntimeError (MetricMismatchError, SyncTimeoutError) that ended ``body``, if any.

    ``reducer.seen`` is the list of emitted ``(step, split, name, value)`` as it grows.
    """
    hub = Hub(world, timeout)
    results: list[dict[str, Any]] = [{"seen": [], "error": None} for _ in range(world)]

    def target(rank: int) -> None:
        transport = ThreadTransport(hub, rank, board=board)
        results[rank]["transport"] = transport
        seen: list[Any] = results[rank]["seen"]
        reducer = MetricReducer(
            lambda *a: seen.append(a),
            transport=transport,
            timeout=timeout,
            sync_every=sync_every,
            blocking=blocking,
        )
        results[rank]["reducer"] = reducer
        reducer.seen = seen  # type: ignore[attr-defined]  # what a body reads as it goes
        try:
            body(rank, reducer)
        except RuntimeError as exc:
            results[rank]["error"] = exc

    threads = [threading.Thread(target=target, args=(r,)) for r in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results
