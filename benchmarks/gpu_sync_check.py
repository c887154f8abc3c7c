"""GPU check: CUDA 0-dim metric values cost no host sync per ``log_metric`` call.

Run on a machine with a GPU, either alone (one process: device values wait and are copied to the
host at the flush) or under torchrun (values reduced across ranks; NCCL when there are as many GPUs
as ranks, else every rank shares GPU 0 over gloo)::

    python benchmarks/gpu_sync_check.py --out /tmp/gpu
    python -m torch.distributed.run --nproc-per-node=2 benchmarks/gpu_sync_check.py --out /tmp/gpu

It counts synchronizing CUDA calls with ``torch.cuda.set_sync_debug_mode("warn")`` while 1,000 steps
of 8 metrics are logged (expected: one per step under reduction, the copy of the step's values at
its sync point; none at all in one process until the flush), checks every value written to
``metrics.csv`` against the host-side expectation, and times the logging calls of a step against
the same calls with Python floats and with a naive ``.item()`` per value. Prints a JSON report.
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

from expmate import ExperimentLogger

NAMES = [f"m{i}" for i in range(8)]


def values_for(step: int, rank: int, device: torch.device) -> list[torch.Tensor]:
    """The step's metric values as 0-dim float32 tensors already on the device."""
    base = torch.arange(len(NAMES), dtype=torch.float32, device=device)
    row = base + (step * 0.001 + rank)
    return list(row.unbind())


def expected(step: int, world: int) -> list[float]:
    """The reduced (mean over ranks) value of each metric, from the same float32 numbers."""
    base = torch.arange(len(NAMES), dtype=torch.float32)
    rows = [(base + (step * 0.001 + r)).double() for r in range(world)]
    return (sum(rows) / world).tolist()  # type: ignore[union-attr]


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
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", default="/tmp/expmate-gpu-check")
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
    run_dir = Path(args.out) / f"run_w{world}"
    logger = ExperimentLogger(run_dir, console_output=False, reduce="mean", flush_interval=1000.0)

    steps = args.steps
    prepared = [values_for(s, rank, device) for s in range(steps)]
    torch.cuda.synchronize()
    per_step: list[float] = []

    def log_all() -> None:
        for step in range(steps):
            torch.cuda._sleep(
                200_000
            )  # the step's GPU work still in flight when metrics are logged
            t = time.perf_counter()
            for name, value in zip(NAMES, prepared[step], strict=True):
                logger.log_metric(step, "train", name, value)
            per_step.append(time.perf_counter() - t)

    syncs, elapsed = count_syncs(log_all)
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
    wrong = [
        (s, n, got.get((s, n)), e)
        for s in range(steps)
        for n, e in zip(NAMES, expected(s, world), strict=True)
        if got.get((s, n)) != e
    ]
    report = {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "world_size": world,
        "backend": backend,
        "steps": steps,
        "metrics_per_step": len(NAMES),
        "sync_calls_while_logging": syncs,
        "sync_calls_per_step": syncs / steps,
        "sync_calls_at_final_flush": flush_syncs,
        "rows_checked": len(got),
        "rows_wrong": len(wrong),
        "first_wrong": wrong[:3],
        "logging_seconds_total": elapsed,
        "median_us_per_step_cuda_tensors": gpu_step_us,
        "median_us_per_step_floats": statistics.median(float_times) * 1e6,
        "median_us_per_step_item_each": statistics.median(item_times) * 1e6,
    }
    print(json.dumps(report, indent=2))
    (Path(args.out) / f"report_w{world}.json").write_text(json.dumps(report, indent=2))
    return 0 if not wrong and len(got) == steps * len(NAMES) else 1


if __name__ == "__main__":
    raise SystemExit(main())
