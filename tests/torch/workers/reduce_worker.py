"""Worker for tests/torch/test_reduce.py: MetricReducer on a real gloo group under torchrun.

Usage: reduce_worker.py OUT_DIR MODE, MODE one of ``values`` and ``timeout``; each rank writes
``OUT_DIR/rank{r}.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from expmate.torch import mp
from expmate.torch.reduce import GlooTransport, MetricMismatchError, MetricReducer, SyncTimeoutError


def counting_transport(timeout: float, counts: dict[str, int]) -> GlooTransport:
    """A gloo transport that counts its collectives."""
    transport = GlooTransport(timeout)
    for name in ("all_gather", "all_gather_object"):
        inner = getattr(transport, name)

        def counted(arg: Any, _inner: Any = inner, _name: str = name) -> Any:
            counts[_name] += 1
            return _inner(arg)

        setattr(transport, name, counted)
    return transport


def values(rank: int) -> dict[str, Any]:
    """Exact reductions (numbers, then tensors), a mismatch on both ranks, then recovery."""
    seen: list[Any] = []
    counts = {"all_gather": 0, "all_gather_object": 0}
    reducer = MetricReducer(
        lambda *a: seen.append(list(a)), timeout=30, transport=counting_transport(30, counts)
    )
    reducer.add(0, "train", "loss", [1.0, 4.0][rank], "mean", [3.0, 1.0][rank])
    reducer.add(0, "train", "samples", [10, 14][rank], "sum", 1.0)
    reducer.add(0, "train", "lo", [3.0, -2.0][rank], "min", 1.0)
    reducer.add(0, "train", "hi", [5.0, 0.5][rank], "max", 1.0)
    reducer.add(1, "train", "loss", [torch.tensor(0.25), torch.tensor([0.5])][rank], "mean", 1.0)
    reducer.add(1, "train", "n", [torch.tensor(5), torch.tensor([6])][rank], "sum", 1.0)
    reducer.add(2, "train", "loss", 1.0, "mean", 1.0)
    if rank == 0:
        reducer.add(2, "val", "acc", 1.0, "mean", 1.0)
    mismatch = None
    try:
        reducer.sync()
    except MetricMismatchError as exc:
        mismatch = str(exc)
    reducer.add(3, "train", "loss", [2.0, 3.0][rank], "mean", 1.0)
    reducer.add(3, "train", "n", [1, 2][rank], "sum", 1.0)
    reducer.close()
    return {"seen": seen, "mismatch": mismatch, "gathers": counts}


def timeout(rank: int) -> dict[str, Any]:
    """Rank 1 never reaches the sync of step 4, nor creates a second reducer: rank 0 must fail
    within the 2 s timeout both times."""
    reducer = MetricReducer(lambda *a: None, timeout=2.0)
    for step in range(4):
        reducer.add(step, "train", "loss", 1.0, "mean", 1.0)
    if rank == 1:
        reducer.sync()  # step 3, joined by rank 0's add(4)
        time.sleep(7.0)
        return {"skipped": True}
    reducer.add(4, "train", "loss", 1.0, "mean", 1.0)
    result: dict[str, Any] = {}
    start = time.monotonic()
    try:
        reducer.sync()
    except SyncTimeoutError as exc:
        result.update(error=type(exc).__name__, message=str(exc), waited=time.monotonic() - start)
    reducer.close()
    start = time.monotonic()
    try:
        MetricReducer(lambda *a: None, timeout=2.0)
    except SyncTimeoutError as exc:
        result.update(create_message=str(exc), create_waited=time.monotonic() - start)
    return result


def main() -> None:
    out, mode = Path(sys.argv[1]), sys.argv[2]
    rank, _, _ = mp.setup_ddp("gloo", timeout=60)
    result = {"values": values, "timeout": timeout}[mode](rank)
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    sys.stdout.flush()
    if mode == "timeout":
        os._exit(0)  # the group is broken on purpose: leave without tearing it down
    mp.cleanup_ddp()


if __name__ == "__main__":
    main()
