"""What system metrics, run.json and the progress bar cost: CPU per sample, share of one core,
logger start/close, µs per item of a progress loop.

Usage:
    .venv/bin/python benchmarks/bench_extras.py            # ~1 min on 2 cores
    .venv/bin/python benchmarks/bench_extras.py --quick    # ~20 s

A report, not a test: it prints a markdown table (with PASS/MISS against the target of under 1% of
one core at ``system_metrics=30``, from the sampling thread's own cost) and exits 0 whatever it
finds. Every figure comes from a fresh interpreter; the thread's cost per sample is the CPU of a
process sampling every 0.1 s while its main thread sleeps, less that of the same process without
sampling, divided by the samples taken. Rank 0 of a logger that reduces across ranks does more
per sample (its own rows written to ``metrics_rank0.csv`` at once, the ride-along columns, the
maxima); that is measured in a loop, in one process whose reduction hands the maxima straight
back, and added to the thread's figure for the second share.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from _timing import Stats, machine_description, markdown_table, run_child

SCRIPT = Path(__file__).resolve()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_samples(samples: int) -> dict[str, float]:
    """CPU of ``samples`` calls of one sample (psutil probe, GPU probe, rows into the store)."""
    from expmate import ExperimentLogger

    with tempfile.TemporaryDirectory() as where:
        logger = ExperimentLogger(run_dir=where, console_output=False, system_metrics=3600)
        for _ in range(20):  # warm-up
            logger._system.sample()
        start = cpu_seconds()
        for _ in range(samples):
            logger._system.sample()
        spent = cpu_seconds() - start
        logger.close()
    return {"cpu_per_sample": spent / samples}


def child_samples_reducing(samples: int) -> dict[str, float]:
    """CPU of ``samples`` calls of one sample as rank 0 of a reducing logger samples: its own
    rows written to ``metrics_rank0.csv`` at once, the ride-along columns updated, and (the
    one-process reduction hands them straight back) the maxima recorded for ``metrics.csv``."""
    from expmate.metric_router import MetricRouter
    from expmate.metric_store import MetricStore
    from expmate.system_metrics import SystemMetrics

    with tempfile.TemporaryDirectory() as where:
        store = MetricStore(Path(where, "metrics.csv"), None)
        router = MetricRouter(
            store, rank=0, world_size=1, default_reduce="mean", sync_timeout=60.0,
            sync_every=1, flush=lambda: None,
        )  # fmt: skip
        sampler = SystemMetrics(store, 3600, print, across=router.add_columns, rank=0)
        for _ in range(20):  # warm-up
            sampler.sample()
        store.take()
        start = cpu_seconds()
        for _ in range(samples):
            sampler.sample()
        spent = cpu_seconds() - start
        sampler.stop()
        assert store.take()[0], "no maxima were recorded"
    return {"cpu_per_sample": spent / samples}


def child_idle(interval: float | None, seconds: float) -> dict[str, float]:
    """Process CPU while the main thread sleeps ``seconds`` with sampling every ``interval``."""
    from expmate import ExperimentLogger

    with tempfile.TemporaryDirectory() as where:
        logger = ExperimentLogger(run_dir=where, console_output=False, system_metrics=interval)
        start = cpu_seconds()
        time.sleep(seconds)
        spent = cpu_seconds() - start
        logger.close()
        rows = Path(where, "metrics.csv")
        count = rows.read_text().count(",system,cpu_percent,") if rows.exists() else 0
    return {"cpu": spent, "samples": count}


def child_start(capture_git: bool, loggers: int) -> dict[str, float]:
    """Wall time of creating and closing a logger (run.json written twice), per logger."""
    from expmate import ExperimentLogger

    with tempfile.TemporaryDirectory() as where:
        for i in range(3):
            ExperimentLogger(
                Path(where, f"w{i}"), console_output=False, capture_git=capture_git
            ).close()
        start = time.perf_counter()
        for i in range(loggers):
            ExperimentLogger(
                Path(where, f"r{i}"), console_output=False, capture_git=capture_git
            ).close()
        return {"wall_per_logger": (time.perf_counter() - start) / loggers}


def child_progress(items: int) -> dict[str, float]:
    """Wall µs per item of ``logger.progress`` on a pseudo-terminal (tqdm's bar, one postfix
    metric), without a terminal (the log-line form), and of the bare loop."""
    import pty

    from expmate import ExperimentLogger

    def per_item(loop: object) -> float:
        start = time.perf_counter()
        for _ in loop:  # type: ignore[attr-defined]
            pass
        return (time.perf_counter() - start) / items * 1e6

    master, slave = pty.openpty()
    reader = threading.Thread(target=_drain, args=(master,), daemon=True)
    reader.start()
    with tempfile.TemporaryDirectory() as where, open(slave, "w") as terminal:
        bar = ExperimentLogger(Path(where, "bar"), console_stream=terminal)
        bar.log_metric(0, "train", "loss", 0.5)
        lines = ExperimentLogger(Path(where, "lines"), console_output=False)
        bare = per_item(range(items))
        on_bar = per_item(bar.progress(range(items), postfix=["train/loss"]))
        on_lines = per_item(lines.progress(range(items), postfix=["train/loss"]))
        bar.close()
        lines.close()
    return {"bare": bare, "bar": on_bar, "lines": on_lines}


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 65536):
            pass


def run_child_case(args: argparse.Namespace) -> None:
    case = args.child
    if case == "samples":
        result = child_samples(args.samples)
    elif case == "samples-reducing":
        result = child_samples_reducing(args.samples)
    elif case == "progress":
        result = child_progress(args.items)
    elif case.startswith("idle"):
        interval = None if case == "idle-off" else float(case.split("-", 1)[1])
        result = child_idle(interval, args.seconds)
    else:
        result = child_start(case == "start-git", args.loggers)
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=2000, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--loggers", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=200_000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child_case(args)
        return 0
    reps = args.reps or (3 if args.quick else 5)
    seconds = "3" if args.quick else "6"
    per_sample, reducing, idle_on, idle_off, start_off, start_git = [], [], [], [], [], []
    bars: list[dict[str, float]] = []
    for rep in range(reps):
        print(f"rep {rep + 1}/{reps}", file=sys.stderr)
        per_sample.append(run_child(SCRIPT, ["--child", "samples"])["cpu_per_sample"])
        reducing.append(run_child(SCRIPT, ["--child", "samples-reducing"])["cpu_per_sample"])
        on = run_child(SCRIPT, ["--child", "idle-0.1", "--seconds", seconds])
        off = run_child(SCRIPT, ["--child", "idle-off", "--seconds", seconds])
        idle_on.append((on["cpu"] - off["cpu"]) / max(on["samples"], 1))
        idle_off.append(off["cpu"])
        start_off.append(run_child(SCRIPT, ["--child", "start-off"])["wall_per_logger"])
        start_git.append(run_child(SCRIPT, ["--child", "start-git"])["wall_per_logger"])
        bars.append(run_child(SCRIPT, ["--child", "progress"]))
    sample = Stats(per_sample)
    joint = Stats(reducing)
    thread = Stats(idle_on)
    share_30 = thread.median / 30 * 100  # the thread's figure: wake-ups included
    # ... plus what rank 0 of a reducing logger adds to a sample (its own file, the columns).
    share_30_joint = (thread.median + max(0.0, joint.median - sample.median)) / 30 * 100
    rows = [
        ["CPU per sample, called in a loop (ms)", f"{sample.median * 1e3:.3f}",
         f"{sample.low * 1e3:.3f}-{sample.high * 1e3:.3f}", ""],
        ["CPU per sample, rank 0 of a reducing logger, called in a loop (ms)",
         f"{joint.median * 1e3:.3f}", f"{joint.low * 1e3:.3f}-{joint.high * 1e3:.3f}", ""],
        ["CPU per sample, from the thread every 0.1 s, less an idle logger (ms)",
         f"{thread.median * 1e3:.3f}", f"{thread.low * 1e3:.3f}-{thread.high * 1e3:.3f}", ""],
        ["share of one core at system_metrics=30 (%)", f"{share_30:.5f}", "",
         "PASS" if share_30 < 1 else "MISS"],
        ["share of one core at system_metrics=30, rank 0 of a reducing logger (%)",
         f"{share_30_joint:.5f}", "", "PASS" if share_30_joint < 1 else "MISS"],
        ["share of one core at system_metrics=1 (%)", f"{thread.median * 100:.4f}", "", ""],
        ["logger start + close, capture_git=False (ms)", f"{Stats(start_off).median * 1e3:.2f}",
         f"{min(start_off) * 1e3:.2f}-{max(start_off) * 1e3:.2f}", ""],
        ["logger start + close, capture_git=True, in this repository (ms)",
         f"{Stats(start_git).median * 1e3:.2f}",
         f"{min(start_git) * 1e3:.2f}-{max(start_git) * 1e3:.2f}", ""],
    ]  # fmt: skip
    for key, label in [
        ("bare", "bare loop"),
        ("bar", "progress(): tqdm bar on a pty"),
        ("lines", "progress(): log-line form"),
    ]:
        values = [b[key] for b in bars]
        rows.append([f"{label}, µs per item", f"{Stats(values).median:.3f}",
                     f"{min(values):.3f}-{max(values):.3f}", ""])  # fmt: skip
    print(f"Machine: {machine_description()}; load average {os.getloadavg()[0]:.2f} at the end")
    print(markdown_table(["figure", "median", "min-max", "target"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
