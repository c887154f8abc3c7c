"""GPU check: CUDA 0-dim metric values cost no host sync in the steady state.

Run on a machine with a GPU, either alone (one process: the values wait in the logger's store and
travel to the host at its flushes) or under torchrun (values reduced across ranks at each sync
point; NCCL when there are as many GPUs as ranks, else every rank shares GPU 0 over gloo)::

    python benchmarks/gpu_sync_check.py --out /tmp/gpu
    python -m torch.distributed.run --nproc-per-node=2 benchmarks/gpu_sync_check.py --out /tmp/gpu
    python -m torch.distributed.run --nproc-per-node=2 benchmarks/gpu_sync_check.py --out /tmp/gpu \\
        --sync-every 10

``benchmarks/gpu_checks.sh`` runs every case in one go.

After ``--warmup`` steps (the first key set's agreement, the pinned buffers, the threads), it counts
synchronizing CUDA calls with ``torch.cuda.set_sync_debug_mode("warn")`` (on every thread: the
training thread, the reducer's, the background flusher's) while ``--steps`` steps of 8 metrics are
logged. Expected at 1 and at 2 ranks: none at all. Under reduction each sync point stacks the values
once per device and copies them to pinned memory with ``non_blocking=True`` and a CUDA event that
the reducer's thread polls; in one process (or with ``--reduce none``) the logger's flushes do the
same (the background flush every ``--flush-interval`` seconds, and the flush forced every 2,048
waiting values, start the copy; a later flush writes the rows once the event has completed). The
final ``flush()`` waits for what is in flight (by polling the events, counted apart). It checks
every value written to ``metrics.csv`` against the host-side expectation, and times the logging
calls of a step against the same calls with Python floats and with a naive ``.item()`` per value.
Prints a JSON report (rank 0) and exits 1 if a value is wrong or missing, or if
``--expect-zero`` is given and a synchronizing call was counted while logging.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import expmate.torch  # noqa: F401 - the distributed reduction, for the logger under torchrun
from expmate import ExperimentLogger

NAMES = [f"m{i}" for i in range(8)]


def values_for(step: int, rank: int, device: torch.device) -> list[torch.Tensor]:
    """The step's metric values as 0-dim float32 tensors already on the device."""
    base = torch.arange(len(NAMES), dtype=torch.float32, device=device)
    row = base + (step * 0.001 + rank)
    return list(row.unbind())


def expected(step: int, world: int) -> list[float]:
    """The reduced (mean over ranks) value of each metric, from the same float32 numbers (rank
    0's own values when ``world`` is 1)."""
    base = torch.arange(len(NAMES), dtype=torch.float32)
    rows = [(base + (step * 0.001 + r)).double() for r in range(world)]
    return (sum(rows) / world).tolist()  # type: ignore[union-attr]


def count_materialize(logger: ExperimentLogger) -> dict[str, int]:
    """Count the store's moves of device values (flushes that start or collect copies), by kind:
    ``started`` (did not wait for the device) and ``waited``."""
    counts = {"started": 0, "waited": 0}
    store = logger._metrics
    original = store.materialize

    def counted(*, wait: bool = True) -> None:
        counts["waited" if wait else "started"] += 1
        original(wait=wait)

    store.materialize = counted  # type: ignore[method-assign]
    return counts


def count_syncs(fn) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Run ``fn`` with CUDA sync debugging on; return (synchronizing calls, seconds)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        start = time.perf_counter()
        try:
            fn()
        finally:
            elapsed = time.perf_counter() - start
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchronizing" in str(w.message) for w in caught)
    return syncs, elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000, help="steps counted")
    parser.add_argument("--warmup", type=int, default=50, help="steps logged before counting")
    parser.add_argument("--sync-every", type=int, default=1, help="steps per collective")
    parser.add_argument("--out", default="/tmp/expmate-gpu-check")
    parser.add_argument(
        "--reduce", choices=["mean", "none"], default="mean", help="none: every rank its own rows"
    )
    parser.add_argument(
        "--flush-interval", type=float, default=0.02, help="seconds between background flushes"
    )
    parser.add_argument(
        "--expect-zero", action="store_true", help="exit 1 if any sync is counted while logging"
    )
    args = parser.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    gpus = torch.cuda.device_count()
    if gpus == 0:
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 2
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % gpus)
    torch.cuda.set_device(device)
    backend = None
    if world > 1:
        backend = "nccl" if gpus >= world else "gloo"
        dist.init_process_group(backend)
    label = f"w{world}_k{args.sync_every}_{args.reduce}_f{args.flush_interval:g}"
    run_dir = Path(args.out) / f"run_{label}"
    logger = ExperimentLogger(
        run_dir,
        console_output=False,
        reduce=None if args.reduce == "none" else args.reduce,
        flush_interval=args.flush_interval,
        sync_every=args.sync_every,
    )
    moves = count_materialize(logger)

    warmup, steps = args.warmup, args.warmup + args.steps
    prepared = [values_for(s, rank, device) for s in range(steps)]
    torch.cuda.synchronize()
    per_step: list[float] = []

    def log_steps(first: int, last: int) -> None:
        for step in range(first, last):
            # The step's GPU work is still in flight when its metrics are logged.
            torch.cuda._sleep(200_000)
            t = time.perf_counter()
            for name, value in zip(NAMES, prepared[step], strict=True):
                logger.log_metric(step, "train", name, value)
            per_step.append(time.perf_counter() - t)

    warmup_syncs, _ = count_syncs(lambda: log_steps(0, warmup))
    per_step.clear()
    moves_before = dict(moves)
    syncs, elapsed = count_syncs(lambda: log_steps(warmup, steps))
    moves_logging = {k: v - moves_before[k] for k, v in moves.items()}
    flush_syncs, _ = count_syncs(logger.flush)
    gpu_step_us = statistics.median(per_step) * 1e6

    floats = [[float(v) for v in row] for row in prepared]
    float_times: list[float] = []
    for step in range(steps):
        t = time.perf_counter()
        for name, value in zip(NAMES, floats[step], strict=True):
            logger.log_metric(step + steps, "float", name, value)
        float_times.append(time.perf_counter() - t)
    item_times: list[float] = []
    for step in range(steps):
        torch.cuda._sleep(200_000)
        t = time.perf_counter()
        for name, value in zip(NAMES, prepared[step], strict=True):
            logger.log_metric(step + 2 * steps, "item", name, value.item())
        item_times.append(time.perf_counter() - t)
    logger.close()
    if world > 1:
        dist.destroy_process_group()
    if rank != 0:
        return 0

    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "train"]
    got = {(int(r["step"]), r["name"]): float(r["value"]) for r in rows}
    reduced_over = world if args.reduce != "none" else 1
    wrong = [
        (s, n, got.get((s, n)), e)
        for s in range(steps)
        for n, e in zip(NAMES, expected(s, reduced_over), strict=True)
        if got.get((s, n)) != e
    ]
    in_order = [int(r["step"]) for r in rows] == sorted(int(r["step"]) for r in rows)
    report = {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "world_size": world,
        "backend": backend,
        "reduce": args.reduce,
        "flush_interval": args.flush_interval,
        "sync_every": args.sync_every,
        "steps_counted": args.steps,
        "warmup_steps": warmup,
        "metrics_per_step": len(NAMES),
        "sync_calls_during_warmup": warmup_syncs,
        "sync_calls_while_logging": syncs,
        "sync_calls_per_step": syncs / args.steps,
        "sync_calls_at_final_flush": flush_syncs,
        "store_flushes_while_logging": moves_logging,
        "rows_checked": len(got),
        "rows_wrong": len(wrong),
        "rows_in_step_order": in_order,
        "first_wrong": wrong[:3],
        "logging_seconds_total": elapsed,
        "median_us_per_step_cuda_tensors": gpu_step_us,
        "median_us_per_step_floats": statistics.median(float_times) * 1e6,
        "median_us_per_step_item_each": statistics.median(item_times) * 1e6,
    }
    print(json.dumps(report, indent=2))
    (Path(args.out) / f"report_{label}.json").write_text(json.dumps(report, indent=2))
    ok = not wrong and in_order and len(got) == steps * len(NAMES)
    return 0 if ok and not (args.expect_zero and syncs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
