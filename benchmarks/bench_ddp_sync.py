"""Per-step cost of reducing 8 metrics across ranks: MetricReducer against hand-written collectives.

Run under torchrun (CPU, gloo)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python -m torch.distributed.run --nproc-per-node=2 \\
        benchmarks/bench_ddp_sync.py --steps 2000 --metrics 8

Every method reduces the same values in the same process group set-up, in interleaved rounds
(``--rounds``) so that machine noise hits all of them alike; rank 0 prints the median ms/step:

- ``expmate MetricReducer``: 8 ``add()`` calls a step; the step change syncs (one all_gather,
  mismatch detection included);
- ``all_reduce per metric``: one 1-element all_reduce per metric (what ``sync_dist=True`` does);
- ``stacked all_reduce``: ``torch.tensor(values)`` then one all_reduce;
- ``stacked reduce to rank 0``: ``torch.tensor(values)`` then one ``dist.reduce``;
- ``stacked all_gather``: ``torch.tensor(values)`` then one all_gather (the collective the
  reducer uses, without its bookkeeping).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist

from expmate.torch import mp
from expmate.torch.reduce import MetricReducer

Method = Callable[[int, list[float]], None]


def make_methods(metrics: int) -> dict[str, Method]:
    """The methods under test, each a function ``(step, values) -> None``."""
    group = dist.new_group(backend="gloo", timeout=timedelta(seconds=60))
    names = [f"m{i}" for i in range(metrics)]
    reducer = MetricReducer(lambda *a: None, timeout=60)

    def ours(step: int, values: list[float]) -> None:
        for name, value in zip(names, values, strict=True):
            reducer.add(step, "train", name, value, "mean", 1.0)

    def per_metric(step: int, values: list[float]) -> None:
        for value in values:
            dist.all_reduce(torch.tensor([value], dtype=torch.float64), group=group)

    def stacked(step: int, values: list[float]) -> None:
        dist.all_reduce(torch.tensor(values, dtype=torch.float64), group=group)

    def to_rank0(step: int, values: list[float]) -> None:
        dist.reduce(torch.tensor(values, dtype=torch.float64), dst=0, group=group)

    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    out = torch.empty(dist.get_world_size() * metrics, dtype=torch.float64)

    def gathered(step: int, values: list[float]) -> None:
        gather(out, torch.tensor(values, dtype=torch.float64), group=group)

    methods: dict[str, Method] = {
        "expmate MetricReducer": ours,
        "all_reduce per metric": per_metric,
        "stacked all_reduce": stacked,
        "stacked reduce to rank 0": to_rank0,
        "stacked all_gather": gathered,
    }
    methods["expmate MetricReducer"].reducer = reducer  # type: ignore[attr-defined]
    return methods


def time_round(method: Method, first_step: int, steps: int, values: list[float]) -> float:
    """Seconds per step over ``steps`` steps (all ranks start together)."""
    mp.barrier()
    start = time.perf_counter()
    for step in range(first_step, first_step + steps):
        method(step, values)
    reducer = getattr(method, "reducer", None)
    if reducer is not None:
        reducer.sync()  # the last step's values are part of the work
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per method")
    parser.add_argument("--metrics", type=int, default=8, help="metrics per step")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    args = parser.parse_args()
    rank, _, world = mp.setup_ddp(backend="gloo")
    methods = make_methods(args.metrics)
    values = [float(rank + i) / 7 for i in range(args.metrics)]
    per_round = max(1, args.steps // args.rounds)
    for method in methods.values():  # warm-up, and the reducer's first (slow-path) step
        time_round(method, 0, 50, values)
    timings: dict[str, list[float]] = {name: [] for name in methods}
    step = 1000
    for _ in range(args.rounds):
        for name, method in methods.items():
            timings[name].append(time_round(method, step, per_round, values))
            step += per_round
    if rank == 0:
        report(timings, world=world, steps=per_round * args.rounds, metrics=args.metrics)
    methods["expmate MetricReducer"].reducer.close()  # type: ignore[attr-defined]
    mp.cleanup_ddp()


def report(timings: dict[str, list[float]], *, world: int, steps: int, metrics: int) -> None:
    """Print the median ms/step of every method and the two ratios the targets are about."""
    ms = {name: statistics.median(t) * 1e3 for name, t in timings.items()}
    if os.environ.get("BENCH_VERBOSE"):
        for name, t in timings.items():
            print(name, " ".join(f"{x * 1e3:.3f}" for x in t))
    print(f"{world} ranks (gloo, CPU), {metrics} metrics/step, {steps} steps per method")
    print(f"| {'method':<26} | {'ms/step':>8} |")
    print(f"|{'-' * 28}|{'-' * 10}|")
    for name, value in ms.items():
        print(f"| {name:<26} | {value:>8.3f} |")
    ours = ms["expmate MetricReducer"]
    print(f"ours / stacked all_reduce: {ours / ms['stacked all_reduce']:.2f}x (target <= 1.2x)")
    print(f"per-metric / ours: {ms['all_reduce per metric'] / ours:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    main()
