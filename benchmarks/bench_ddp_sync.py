"""Per-step cost of reducing metrics across ranks: a training loop, and the collectives alone.

Two modes. ``--launch 2,4,8`` (not under torchrun) starts one torchrun job per world size in
``loop`` mode and prints one table with the load average: a training loop of fixed work per
step (``--work-ms``, a sleep standing for a GPU-bound step) logging 8 reduced metrics a step,
with each way of reducing them against the same loop logging them unreduced::

    .venv/bin/python benchmarks/bench_ddp_sync.py --launch 2,4,8

- ``local``: ``reduce=None`` (each rank writes its own values): the reference;
- ``async, sync_every=1`` / ``10``: ``ExperimentLogger(reduce="mean", sync_every=k)``, the
  default asynchronous path (the reducer's own thread);
- ``blocking, sync_every=1`` / ``10``: the same collectives, waited for at each sync point (the
  old path);
- ``work handles, sync_every=1``: the alternative to a thread, measured for the design choice:
  gloo's asynchronous ``all_gather`` posted from the training thread and waited for at the next
  sync point (CPU values, fast path only; not part of expmate);
- with ``--depths 2,3``: ``depth D, sync_every=1`` / ``10``, up to D collectives in flight
  instead of one (``DeepReducer``, measured for the design choice; not part of expmate).

Per configuration: ms per step (the loop's wall time over its steps, the final ``sync()``
included), its ratio to ``local``, the training thread's time inside the logger per step, as
wall time (waits included) and as the thread's own CPU time (``time.thread_time``; rank 0, and
the largest over ranks), and the collectives per 1,000 steps as counted by the transport. Configurations run in interleaved rounds (``--rounds``) so that machine noise hits
all of them alike; the figures are medians over rounds.

``collectives`` mode (the default under torchrun) compares the reducer with hand-written
collectives, 8 metrics a step, no other work::

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
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from expmate import ExperimentLogger, reduction
from expmate.torch import mp
from expmate.torch import reduce as reduce_module
from expmate.torch._batch import host_values
from expmate.torch.reduce import GlooTransport, MetricReducer, _worse

Method = Callable[[int, list[float]], None]
REPO = Path(__file__).resolve().parent.parent
GATHER = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

# ---------------------------------------------------------------------------- collectives mode


def make_methods(metrics: int) -> dict[str, Method]:
    """The methods under test, each a function ``(step, values) -> None``."""
    group = dist.new_group(backend="gloo", timeout=timedelta(seconds=60))
    names = [f"m{i}" for i in range(metrics)]
    reducer = MetricReducer(lambda *a: None, timeout=60, blocking=True)

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

    out = torch.empty(dist.get_world_size() * metrics, dtype=torch.float64)

    def gathered(step: int, values: list[float]) -> None:
        GATHER(out, torch.tensor(values, dtype=torch.float64), group=group)

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


def collectives_mode(args: argparse.Namespace) -> None:
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
    print("(the reducer blocking: each step's collective waited for where it is made)")
    print(f"| {'method':<26} | {'ms/step':>8} |")
    print(f"|{'-' * 28}|{'-' * 10}|")
    for name, value in ms.items():
        print(f"| {name:<26} | {value:>8.3f} |")
    ours = ms["expmate MetricReducer"]
    print(f"ours / stacked all_reduce: {ours / ms['stacked all_reduce']:.2f}x (target <= 1.2x)")
    print(f"per-metric / ours: {ms['all_reduce per metric'] / ours:.2f}x (target >= 1.8x)")


# ---------------------------------------------------------------------------- loop mode


class WorkHandleReducer(MetricReducer):
    """The alternative to the reducer's thread, for the measurement only: the training thread
    builds the row and posts gloo's asynchronous ``all_gather``; the next sync point waits for
    its work handle and reads the result (CPU values; a new key set's slow path runs there)."""

    def _post(self, job: Any) -> None:
        self._inflight = job
        exchange, transport = self._exchange, self._transport
        values = host_values(job.slots, job.copy)
        wire = exchange._wire_of(exchange._row(job, values))
        out = torch.empty(transport.world_size * wire.numel(), dtype=torch.float64)
        transport.counts["all_gather"] += 1  # type: ignore[attr-defined]
        group = transport.group  # type: ignore[attr-defined]
        job.handle = (GATHER(out, wire, group=group, async_op=True), out, values)

    def _consume(self) -> BaseException | None:
        job = self._inflight
        if job is not None and not job.done.is_set():
            work, out, values = job.handle
            work.wait()
            self._exchange._read(job, out.view(self._transport.world_size, -1), values)
            self._finish(job)
        return super()._consume()


class DeepReducer(MetricReducer):
    """For the measurement only (``--depths``): up to ``depth`` collectives in flight instead of
    one, so a sync point waits for the job ``depth`` sync points back. A job's layouts are
    remembered when the training thread consumes it (not on the reducer's thread), so that every
    rank packs the same row width whatever its timing; errors and the stop then surface ``depth``
    sync points late."""

    depth = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._older: deque[Any] = deque()
        self._deferred: dict[int, list[Any]] = {}

    def _advance(self) -> BaseException | None:
        error = None
        while len(self._older) + (self._inflight is not None) >= self.depth:
            error = _worse(error, self._consume_one())
        job = self._pack(force=False)
        if job is not None:
            self._post(job)
        return error

    def _post(self, job: Any) -> None:
        if self._inflight is not None:
            self._older.append(self._inflight)
        super()._post(job)

    def _consume(self) -> BaseException | None:
        error = None
        while self._older or self._inflight is not None:
            error = _worse(error, self._consume_one())
        return error

    def _consume_one(self) -> BaseException | None:
        if not self._older:
            return super()._consume()
        newest, self._inflight = self._inflight, self._older.popleft()
        try:
            return super()._consume()
        finally:
            self._inflight = newest

    def wait(self) -> None:
        for job in [*self._older, self._inflight]:
            if job is not None:
                job.done.wait(self._wait_limit)

    def _finish(self, job: Any) -> None:
        self._deferred[job.seq], job.remember = job.remember, []
        super()._finish(job)

    def _apply_control(self, job: Any) -> BaseException | None:
        for layout in self._deferred.pop(job.seq, ()):
            self._remember(layout)
        return super()._apply_control(job)


CONFIGS: dict[str, tuple[str | None, int, type[MetricReducer] | None, bool]] = {
    # name: (reduce, sync_every, reducer class, blocking)
    "local (reduce=None)": (None, 1, None, False),
    "async, sync_every=1": ("mean", 1, MetricReducer, False),
    "async, sync_every=10": ("mean", 10, MetricReducer, False),
    "blocking, sync_every=1": ("mean", 1, MetricReducer, True),
    "blocking, sync_every=10": ("mean", 10, MetricReducer, True),
    "work handles, sync_every=1": ("mean", 1, WorkHandleReducer, False),
}


def add_depths(depths: str | None) -> None:
    """Add the ``DeepReducer`` configurations of ``--depths`` (e.g. ``2,3``) to CONFIGS."""
    for depth in [int(d) for d in depths.split(",")] if depths else []:
        kind = type(f"DeepReducer{depth}", (DeepReducer,), {"depth": depth})
        for every in (1, 10):
            CONFIGS[f"depth {depth}, sync_every={every}"] = ("mean", every, kind, False)


def make_logger(run_dir: Path, name: str) -> ExperimentLogger:
    """A logger for one configuration, its reducer of the configuration's kind."""
    op, every, kind, blocking = CONFIGS[name]

    def factory(emit: Any, *, timeout: float, sync_every: int) -> MetricReducer:
        assert kind is not None
        return kind(emit, timeout=timeout, sync_every=sync_every, blocking=blocking)

    reduction.register_distributed(factory)
    try:
        return ExperimentLogger(
            run_dir, console_output=False, reduce=op, sync_every=every, sync_timeout=120
        )
    finally:
        reduction.register_distributed(reduce_module.distributed_reduction)


def counts_of(logger: ExperimentLogger) -> dict[str, int]:
    reducer = logger._router._reduction
    counts = getattr(getattr(reducer, "transport", None), "counts", None)
    return dict(counts) if counts else {"all_gather": 0, "all_gather_object": 0}


def run_round(
    logger: ExperimentLogger, first: int, steps: int, values: list[float], work: float
) -> tuple[float, float, float, dict[str, int]]:
    """Seconds per step, wall and CPU seconds of the training thread inside the logger per
    step, and the collectives made, of one round on this rank."""
    names = [f"m{i}" for i in range(len(values))]
    logger.sync()  # nothing buffered or in flight when the clock starts
    mp.barrier()
    before = counts_of(logger)
    inside = cpu = 0.0
    start = time.perf_counter()
    for step in range(first, first + steps):
        time.sleep(work)
        t, c = time.perf_counter(), time.thread_time()
        for name, value in zip(names, values, strict=True):
            logger.log_metric(step, "train", name, value)
        inside += time.perf_counter() - t
        cpu += time.thread_time() - c
    t, c = time.perf_counter(), time.thread_time()
    logger.sync()  # the last window's collective is part of the work
    inside += time.perf_counter() - t
    cpu += time.thread_time() - c
    elapsed = time.perf_counter() - start
    made = {k: v - before[k] for k, v in counts_of(logger).items()}
    return elapsed / steps, inside / steps, cpu / steps, made


def bare_gather_us(
    width: int, *, bruck: bool, pause: float, calls: int = 200
) -> tuple[float, float]:
    """One blocking all_gather of ``width`` float64 values per rank, with gloo's ring or with
    Bruck's rounds (the transport's two ways), one every ``pause`` seconds as in the loop: the
    median µs of wall time, and the mean µs of this process's CPU time (gloo's threads
    included) per call."""
    transport = GlooTransport(60, bruck_from=2 if bruck else 10**9)
    row = torch.zeros(width, dtype=torch.float64)
    times, cpu = [], 0.0
    mp.barrier()
    for _ in range(calls):
        time.sleep(pause)
        t, c = time.perf_counter(), time.process_time()
        transport.all_gather(row)
        times.append(time.perf_counter() - t)
        cpu += time.process_time() - c
    transport.close()
    return statistics.median(times) * 1e6, cpu / calls * 1e6


def loop_mode(args: argparse.Namespace) -> None:
    rank, _, world = mp.setup_ddp(backend="gloo")
    add_depths(args.depths)
    work_dir = Path(args.work_dir)
    loggers = {name: make_logger(work_dir / f"run{i}", name) for i, name in enumerate(CONFIGS)}
    values = [float(rank + i) / 7 for i in range(args.metrics)]
    per_round = args.steps // args.rounds
    for logger in loggers.values():  # warm-up: key sets agreed, threads started
        run_round(logger, 0, 20, values, args.work_ms / 1e3)
    rounds: dict[str, list[tuple[float, float, float, dict[str, int]]]] = {
        name: [] for name in loggers
    }
    step = 1000
    for _ in range(args.rounds):
        for name, logger in loggers.items():
            rounds[name].append(run_round(logger, step, per_round, values, args.work_ms / 1e3))
            step += per_round
    mine = {
        name: {
            "step_ms": statistics.median(r[0] for r in rs) * 1e3,
            "logger_us": statistics.median(r[1] for r in rs) * 1e6,
            "logger_cpu_us": statistics.median(r[2] for r in rs) * 1e6,
            "collectives": {k: sum(r[3][k] for r in rs) for k in rs[0][3]},
        }
        for name, rs in rounds.items()
    }
    for logger in loggers.values():
        logger.close()
    widths = {"k=1": 3 + 1 + 2 + 2 * args.metrics, "k=10": 3 + 1 + 10 * (2 + 2 * args.metrics)}
    gather_us = {
        f"{way} {k}": bare_gather_us(width, bruck=way == "bruck", pause=args.work_ms / 1e3)
        for k, width in widths.items()
        for way in ("ring", "bruck")
    }
    everyone: list[Any] = [None] * world
    dist.all_gather_object(everyone, mine)
    if rank == 0:
        result = {
            "world": world,
            "steps": per_round * args.rounds,
            "metrics": args.metrics,
            "work_ms": args.work_ms,
            "configs": {
                name: {
                    **mine[name],
                    "logger_us_max": max(r[name]["logger_us"] for r in everyone),
                    "logger_cpu_us_max": max(r[name]["logger_cpu_us"] for r in everyone),
                    "step_ms_max": max(r[name]["step_ms"] for r in everyone),
                }
                for name in mine
            },
            "bare_gather_us": gather_us,
        }
        Path(args.out).write_text(json.dumps(result, indent=2))
    mp.cleanup_ddp()


# ---------------------------------------------------------------------------- launcher


def launch(args: argparse.Namespace) -> None:
    """One torchrun job per world size in loop mode, then the table."""
    results = []
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for world in [int(w) for w in args.launch.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            load_before = os.getloadavg()[0]
            argv = [
                sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={world}",
                "--master-addr=127.0.0.1", f"--master-port={args.port + world}",
                __file__, "--mode", "loop", "--out", str(out), "--work-dir", tmp,
                "--steps", str(args.steps), "--rounds", str(args.rounds),
                "--metrics", str(args.metrics), "--work-ms", str(args.work_ms),
            ] + (["--depths", args.depths] if args.depths else [])  # fmt: skip
            print(f"W={world}: running ...", file=sys.stderr, flush=True)
            subprocess.run(argv, check=True, env=env, stdout=sys.stderr)
            result = json.loads(out.read_text())
            result["load"] = [load_before, os.getloadavg()[0]]
            results.append(result)
    print(loop_table(results))


GATHER_KEYS = ("ring k=1", "bruck k=1", "ring k=10", "bruck k=10")


def loop_table(results: list[dict[str, Any]]) -> str:
    """The markdown table of the loop results, with the targets."""
    first = results[0]
    lines = [
        f"{first['steps']} steps per configuration, {first['metrics']} reduced metrics a step, "
        f"{first['work_ms']:g} ms of work (sleep) a step; gloo, CPU, nproc={os.cpu_count()}",
        "",
        "| W | configuration | ms/step | vs local | in the logger, µs/step: wall (rank 0; max) "
        "| CPU (rank 0; max) | collectives /1000 steps | 1-min load |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        world, configs = result["world"], result["configs"]
        local = configs["local (reduce=None)"]["step_ms"]
        scale = 1000 / result["steps"]
        for name, c in configs.items():
            counts = c["collectives"]
            gathered = counts["all_gather"] * scale
            objects = counts["all_gather_object"] * scale
            shown = f"{gathered:g}" + (f" + {objects:g} object" if objects else "")
            lines.append(
                f"| {world} | {name} | {c['step_ms']:.3f} | {c['step_ms'] / local:.3f} | "
                f"{c['logger_us']:.1f}; {c['logger_us_max']:.1f} | "
                f"{c['logger_cpu_us']:.1f}; {c['logger_cpu_us_max']:.1f} | {shown} | "
                f"{result['load'][0]:.1f} -> {result['load'][1]:.1f} |"
            )
    lines += [
        "",
        "One blocking all_gather of the row alone, one per step of work (rank 0: median µs of "
        "wall time; mean µs of process CPU per call, gloo's threads included):",
        "",
        "| W | ring, sync_every=1 row | Bruck, sync_every=1 row | ring, sync_every=10 row "
        "| Bruck, sync_every=10 row |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        g = r["bare_gather_us"]
        cells = [f"{g[key][0]:.0f}; {g[key][1]:.0f}" for key in GATHER_KEYS]
        lines.append(f"| {r['world']} | " + " | ".join(cells) + " |")
    lines += ["", "Targets:"]
    for result in results:
        world, configs = result["world"], result["configs"]
        local = configs["local (reduce=None)"]["step_ms"]
        r1 = configs["async, sync_every=1"]["step_ms"] / local
        r10 = configs["async, sync_every=10"]["step_ms"] / local
        limit = 1.05 if world == 2 else 1.10
        n10 = configs["async, sync_every=10"]["collectives"]["all_gather"] * 1000 / result["steps"]
        cpu = configs["async, sync_every=1"]["logger_cpu_us_max"]
        wall = configs["async, sync_every=1"]["logger_us_max"]
        lines.append(
            f"- W={world}: default {r1:.3f} (<= {limit}: {'PASS' if r1 <= limit else 'MISS'}); "
            f"sync_every=10 {r10:.3f} (<= 1.02: {'PASS' if r10 <= 1.02 else 'MISS'}); "
            f"collectives at sync_every=10: {n10:g} per 1000 steps "
            f"({'PASS' if n10 == 100 else 'MISS'}); training thread in the logger (default, "
            f"max rank): CPU {cpu:.1f} µs"
            + (f" (<= 100: {'PASS' if cpu <= 100 else 'MISS'})" if world == 8 else "")
            + f", wall {wall:.1f} µs"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mode", choices=["collectives", "loop"], default="collectives")
    parser.add_argument("--launch", help="world sizes to launch in loop mode, e.g. 2,4,8")
    parser.add_argument("--steps", type=int, default=None, help="steps per method/config")
    parser.add_argument("--metrics", type=int, default=8, help="metrics per step")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--work-ms", type=float, default=5.0, help="loop: work per step (ms)")
    parser.add_argument("--out", help="loop: where rank 0 writes its JSON")
    parser.add_argument("--work-dir", help="loop: where the loggers write their runs")
    parser.add_argument("--port", type=int, default=29700, help="launch: base master port")
    parser.add_argument(
        "--depths", help="loop: also measure up to this many collectives in flight, e.g. 2,3"
    )
    args = parser.parse_args()
    looping = args.launch or args.mode == "loop"
    args.steps = args.steps or (1000 if looping else 2000)
    args.rounds = args.rounds or (4 if looping else 8)
    if args.launch:
        launch(args)
    elif args.mode == "loop":
        loop_mode(args)
    else:
        collectives_mode(args)


if __name__ == "__main__":
    main()
