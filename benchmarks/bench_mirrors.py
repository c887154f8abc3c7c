"""What a live mirror costs the training loop: ``log_metric`` with and without ``mirror=``.

Each case runs in a fresh interpreter (cases interleaved over the repetitions): a warm-up logger
(10k calls, its mirror started and closed, so imports and first-time costs are paid), then a
timed logger whose mirror has finished starting before the clock starts. The clock covers the
loop of ``--calls`` ``log_metric`` calls only; close (which waits for the mirror's thread to
forward the rest) is timed apart. Per call the report gives the loop's wall time, the training
thread's own CPU time (``time.thread_time``) and the whole process's CPU time (the mirror's
thread included), then how long close took and how many values the mirror forwarded.

A mirror's target is <= 1.5x its reference (ratio of wall medians, same run): no mirror for the
do-nothing mirror (the hook and its queue alone), and for a tracker the same process with the
tracker's library imported but no mirror (importing it costs every call something, mirror or
not; that cost is reported as its own row). Always exits 0: it is a report, not a test.

Usage:
    .venv/bin/python benchmarks/bench_mirrors.py            # 5 x 100k calls per case
    .venv/bin/python benchmarks/bench_mirrors.py --quick    # 3 x 20k calls
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _timing import Stats, machine_description, markdown_table, run_child

SCRIPT = Path(__file__).resolve()
WARMUP_CALLS = 10_000
CASES = {
    "none": "`log_metric`, no mirror",
    "null": "`log_metric`, a mirror that does nothing (the hook and its queue)",
    "tensorboard-imported": "`log_metric`, no mirror, tensorboard imported",
    "tensorboard": '`log_metric`, `mirror="tensorboard"`',
    "wandb-imported": "`log_metric`, no mirror, wandb imported",
    "wandb": '`log_metric`, `mirror="wandb"` (offline)',
    "mlflow-imported": "`log_metric`, no mirror, mlflow imported",
    "mlflow": '`log_metric`, `mirror="mlflow"` (SQLite)',
}
# The reference of each case: its ratio is of medians against it, measured in the same run. A
# tracker's library (hundreds of thousands of objects, its own threads) slows a process whatever
# it mirrors, so the hook is measured against the same process with the library imported.
REFERENCE = {
    "null": "none",
    "tensorboard-imported": "none",
    "tensorboard": "tensorboard-imported",
    "wandb-imported": "none",
    "wandb": "wandb-imported",
    "mlflow-imported": "none",
    "mlflow": "mlflow-imported",
}
TARGETS = {"null", "tensorboard", "wandb", "mlflow"}  # <= 1.5x their reference
IMPORTS = {
    "tensorboard": "tensorboard.summary.writer.event_file_writer",
    "wandb": "wandb",
    "mlflow": "mlflow",
}


def _mirror(case: str, started: threading.Event) -> Any:
    """The case's mirror, made to set ``started`` once its ``start`` returned."""
    from expmate import mirrors

    base = mirrors.Mirror if case == "null" else mirrors.KNOWN[case]

    class Started(base):  # type: ignore[misc, valid-type]
        def start(self, run: Any) -> None:
            super().start(run)
            started.set()

        def log_metrics(self, rows: list[Any]) -> None:
            if case != "null":
                super().log_metrics(rows)

    Started.name = case
    return Started()


def _run(workdir: Path, case: str, n: int) -> dict[str, float]:
    """One logger: wait for its mirror to start, time ``n`` calls, then time close()."""
    from expmate import ExperimentLogger

    started = threading.Event()
    mirror = None if case == "none" or case.endswith("-imported") else _mirror(case, started)
    logger = ExperimentLogger(run_dir=workdir, console_output=False, mirror=mirror)
    if mirror is not None and not started.wait(300):
        raise RuntimeError(f"mirror {case} did not start within 300 s")
    values = [1.0 / (step + 1) for step in range(n)]
    gc.collect()
    wall, thread, cpu = time.perf_counter(), time.thread_time(), time.process_time()
    for step, value in enumerate(values):
        logger.log_metric(step, "train", "loss", value)
    wall, thread, cpu = (
        time.perf_counter() - wall,
        time.thread_time() - thread,
        time.process_time() - cpu,
    )
    began = time.perf_counter()
    logger.close()
    closing = time.perf_counter() - began
    lost = 0
    for line in (workdir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        lost += event.get("not_forwarded", 0)
    return {"wall": wall, "thread": thread, "cpu": cpu, "close": closing, "lost": lost}


def run_case_in_child(case: str, n: int) -> dict[str, Any]:
    """Child side: a warm-up logger, then the timed one."""
    package = case.removesuffix("-imported")
    if package in IMPORTS:
        import importlib

        try:
            importlib.import_module(IMPORTS[package])
        except ImportError:
            return {"skipped": f"{package} not installed"}
    with tempfile.TemporaryDirectory(prefix="expmate-bench-mirrors-") as tmp:
        _run(Path(tmp, "warm"), case, min(n, WARMUP_CALLS))
        return _run(Path(tmp, "timed"), case, n)


def _us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def build_report(calls: int, samples: dict[str, list[dict[str, float]]]) -> tuple[str, list[str]]:
    """The markdown table and the missed targets (ratios of medians against the no-mirror case)."""
    wall = {c: Stats([_us(s["wall"], calls) for s in runs]) for c, runs in samples.items() if runs}
    thread = {
        c: Stats([_us(s["thread"], calls) for s in runs]) for c, runs in samples.items() if runs
    }
    rows, missed = [], []
    for case, runs in samples.items():
        if not runs or case not in wall:
            continue
        cpu = Stats([_us(s["cpu"], calls) for s in runs])
        close = Stats([s["close"] for s in runs])
        lost = Stats([s["lost"] for s in runs])
        ratio, target, result = "1.00x (reference)", "-", "-"
        ref = REFERENCE.get(case)
        if ref in wall:
            value = wall[case].median / wall[ref].median
            thread_value = thread[case].median / thread[ref].median
            ratio = f"{value:.2f}x / {thread_value:.2f}x {ref}"
            if case in TARGETS:
                target = f"<= 1.5x {ref}"
                ok = value <= 1.5
                result = "PASS" if ok else "**MISS**"
                if not ok:
                    missed.append(f"{CASES[case]}: {value:.2f}x {ref}; target {target}")
        rows.append(
            [
                CASES[case],
                f"{wall[case].median:.2f} µs ({wall[case].low:.2f}-{wall[case].high:.2f})",
                f"{thread[case].median:.2f} µs",
                f"{cpu.median:.2f} µs",
                ratio,
                f"{close.median:.2f} s",
                f"{calls - lost.median:,.0f} of {calls:,}" if case in TARGETS else "-",
                target,
                result,
            ]
        )
    header = [
        "case",
        f"loop wall per call (min-max, {len(next(iter(samples.values())))} reps)",
        "training thread CPU",
        "process CPU",
        "ratio (wall / thread CPU)",
        "close()",
        "values forwarded",
        "target",
        "result",
    ]
    return markdown_table(header, rows), missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 x 20k calls")
    parser.add_argument("--calls", type=int, help="timed calls per repetition (default 100k)")
    parser.add_argument("--reps", type=int, help="repetitions (default 5)")
    parser.add_argument("--cases", help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    calls = args.calls or (20_000 if args.quick else 100_000)
    if args.child:
        print(json.dumps(run_case_in_child(args.child, calls)))
        return 0
    reps = args.reps or (3 if args.quick else 5)
    cases = args.cases.split(",") if args.cases else list(CASES)
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    samples: dict[str, list[dict[str, float]]] = {case: [] for case in cases}
    skipped: dict[str, str] = {}
    for rep in range(reps):
        for case in cases:
            if case in skipped:
                continue
            print(f"[{rep + 1}/{reps}] {case}", file=sys.stderr, flush=True)
            try:
                data = run_child(SCRIPT, ["--child", case, "--calls", str(calls)], timeout=900)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                skipped[case] = "failed (see stderr)"
                print(exc, file=sys.stderr)
                continue
            if "skipped" in data:
                skipped[case] = data["skipped"]
                continue
            samples[case].append(data)
    table, missed = build_report(calls, samples)
    print(f"## expmate mirror benchmarks ({calls:,} calls x {reps} reps per case)\n")
    print(f"Machine: {machine_description()}")
    print(
        f"1-minute load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
        f"end (on {os.cpu_count()} CPUs).\n"
    )
    print(table)
    for case, why in skipped.items():
        print(f"\nSkipped {CASES[case]}: {why}.")
    print(f"\nTargets missed: {len(missed)}" + "".join(f"\n- {m}" for m in missed))
    print(f"\nTotal benchmark time {time.perf_counter() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
