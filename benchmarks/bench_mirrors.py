"""What a live mirror costs the training loop: ``log_metric`` with and without ``mirror=``.

Two loops, each case in a fresh interpreter (cases interleaved over the repetitions), each with a
warm-up logger first (its mirror started and closed: imports and first-time costs are paid), then
a timed logger whose mirror has finished starting before the clock starts:

- ``tight``: ``--calls`` ``log_metric`` calls back to back, nothing else: the hook's own cost
  (a mirror that does nothing against none). The clock covers the loop.
- ``steps``: ``--steps`` training steps, each ``--step-ms`` of work that releases the GIL (a
  ``time.sleep``, as CUDA kernels and most torch operators release it) and then ``--metrics``
  ``log_metric`` calls. The clock covers the ``log_metric`` calls only. The trackers' threads do
  their work meanwhile, as they would in training. A tracker is compared with the same process
  with the tracker's library imported but no mirror: importing a library of several hundred
  thousand objects costs every call a little, mirror or not (its own row, against none).

For each: per call, the wall time, the training thread's own CPU time (``time.thread_time``) and
the process's CPU time (the mirror threads included, over the whole loop); then how long
``close()`` took (it waits for the mirror to forward the rest) and how many values the mirror
forwarded. The target: a mirror <= 1.5x its reference (ratio of wall medians, same run).
Always exits 0: it is a report, not a test.

Usage:
    .venv/bin/python benchmarks/bench_mirrors.py            # 5 reps: 100k calls; 1,000 steps
    .venv/bin/python benchmarks/bench_mirrors.py --quick    # 3 reps: 20k calls; 300 steps
    .venv/bin/python benchmarks/bench_mirrors.py --reps 3 \\
        --cases tight-none,tight-tensorboard,tight-wandb,tight-mlflow   # trackers overloaded
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
# case -> (loop, mirror or None, library imported first, reference case or None, label)
CASES: dict[str, tuple[str, str | None, str | None, str | None, str]] = {
    "tight-none": ("tight", None, None, None, "tight loop, no mirror"),
    "tight-null": ("tight", "null", None, "tight-none", "tight loop, a mirror that does nothing"),
    "steps-none": ("steps", None, None, None, "steps, no mirror"),
    "steps-null": ("steps", "null", None, "steps-none", "steps, a mirror that does nothing"),
    "steps-tensorboard-imported": (
        "steps",
        None,
        "tensorboard.summary.writer.event_file_writer",
        "steps-none",
        "steps, no mirror, tensorboard imported",
    ),
    "steps-tensorboard": (
        "steps",
        "tensorboard",
        None,
        "steps-tensorboard-imported",
        'steps, `mirror="tensorboard"`',
    ),
    "steps-wandb-imported": (
        "steps",
        None,
        "wandb",
        "steps-none",
        "steps, no mirror, wandb imported",
    ),
    "steps-wandb": (
        "steps",
        "wandb",
        None,
        "steps-wandb-imported",
        'steps, `mirror="wandb"` (offline)',
    ),
    "steps-mlflow-imported": (
        "steps",
        None,
        "mlflow",
        "steps-none",
        "steps, no mirror, mlflow imported",
    ),
    "steps-mlflow": (
        "steps",
        "mlflow",
        None,
        "steps-mlflow-imported",
        'steps, `mirror="mlflow"` (SQLite)',
    ),
}
# Overload, not run unless named in --cases: a tracker fed by the tight loop (far more values a
# second than it can take). No target: what it shows is what is dropped and how long close waits.
OVERLOAD = {
    f"tight-{kind}": ("tight", kind, None, "tight-none", f'tight loop, `mirror="{kind}"`')
    for kind in ("tensorboard", "wandb", "mlflow")
}
CASES.update(OVERLOAD)
DEFAULT_CASES = [case for case in CASES if case not in OVERLOAD]


def _mirror(kind: str, started: threading.Event) -> Any:
    """The mirror of ``kind``, made to set ``started`` once its ``start`` returned."""
    from expmate import mirrors

    base = mirrors.Mirror if kind == "null" else mirrors.KNOWN[kind]

    class Started(base):  # type: ignore[misc, valid-type]
        def start(self, run: Any) -> None:
            super().start(run)
            started.set()

        def log_metrics(self, rows: list[Any]) -> None:
            if kind != "null":
                super().log_metrics(rows)

    Started.name = kind
    return Started()


def _tight(logger: Any, size: dict[str, int]) -> tuple[float, float, int]:
    values = [1.0 / (step + 1) for step in range(size["calls"])]
    gc.collect()
    wall, thread = time.perf_counter(), time.thread_time()
    for step, value in enumerate(values):
        logger.log_metric(step, "train", "loss", value)
    return time.perf_counter() - wall, time.thread_time() - thread, len(values)


def _steps(logger: Any, size: dict[str, int]) -> tuple[float, float, int]:
    names = [f"metric_{i}" for i in range(size["metrics"])]
    pause = size["step_us"] / 1e6
    wall = thread = 0.0
    gc.collect()
    for step in range(size["steps"]):
        time.sleep(pause)  # the step's work, GIL released
        w, t = time.perf_counter(), time.thread_time()
        for i, name in enumerate(names):
            logger.log_metric(step, "train", name, 1.0 / (step + i + 1))
        wall += time.perf_counter() - w
        thread += time.thread_time() - t
    return wall, thread, size["steps"] * len(names)


def _run(workdir: Path, case: str, size: dict[str, int]) -> dict[str, float]:
    """One logger: wait for its mirror to start, time the loop, then time close()."""
    from expmate import ExperimentLogger

    loop, kind, _, _, _ = CASES[case]
    started = threading.Event()
    mirror = None if kind is None else _mirror(kind, started)
    logger = ExperimentLogger(run_dir=workdir, console_output=False, mirror=mirror)
    if mirror is not None and not started.wait(300):
        raise RuntimeError(f"mirror {kind} did not start within 300 s")
    cpu = time.process_time()
    wall, thread, calls = (_tight if loop == "tight" else _steps)(logger, size)
    cpu = time.process_time() - cpu
    began = time.perf_counter()
    logger.close()
    closing = time.perf_counter() - began
    lost = 0
    for line in (workdir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        lost += json.loads(line).get("not_forwarded", 0)
    return {
        "wall": wall / calls * 1e6,
        "thread": thread / calls * 1e6,
        "cpu": cpu / calls * 1e6,
        "close": closing,
        "forwarded": calls - lost,
        "calls": calls,
    }


def run_case_in_child(case: str, size: dict[str, int]) -> dict[str, Any]:
    """Child side: a warm-up logger, then the timed one."""
    import importlib

    _, kind, library, _, _ = CASES[case]
    try:
        if library is not None:
            importlib.import_module(library)
        if kind not in (None, "null"):
            importlib.import_module("expmate.mirrors").KNOWN[kind]()
    except ImportError as exc:
        return {"skipped": str(exc)}
    warm = {**size, "calls": min(size["calls"], 10_000), "steps": min(size["steps"], 100)}
    with tempfile.TemporaryDirectory(prefix="expmate-bench-mirrors-") as tmp:
        _run(Path(tmp, "warm"), case, warm)
        result = _run(Path(tmp, "timed"), case, size)
        time.sleep(0.2)  # an abandoned tracker thread may still be writing below tmp
    return result


def build_report(samples: dict[str, list[dict[str, float]]]) -> tuple[str, list[str]]:
    """The markdown table and the missed targets."""
    wall = {c: Stats([s["wall"] for s in runs]) for c, runs in samples.items() if runs}
    rows, missed = [], []
    for case, runs in samples.items():
        if not runs:
            continue
        _, kind, _, ref, label = CASES[case]
        thread = Stats([s["thread"] for s in runs])
        cpu = Stats([s["cpu"] for s in runs])
        close = Stats([s["close"] for s in runs])
        ratio, target, result = "1.00x (reference)" if ref is None else "-", "-", "-"
        if ref is not None and ref in wall:
            value = wall[case].median / wall[ref].median
            thread_value = thread.median / Stats([s["thread"] for s in samples[ref]]).median
            ratio = f"{value:.2f}x / {thread_value:.2f}x {CASES[ref][4]}"
            if kind is not None and case not in OVERLOAD:
                target = "<= 1.5x"
                result = "PASS" if value <= 1.5 else "**MISS**"
                if value > 1.5:
                    missed.append(f"{label}: {value:.2f}x {CASES[ref][4]}; target {target}")
        forwarded = (
            f"{min(s['forwarded'] for s in runs):,.0f} of {runs[0]['calls']:,.0f} (least)"
            if kind is not None
            else "-"
        )
        rows.append(
            [
                label,
                f"{wall[case].median:.2f} µs ({wall[case].low:.2f}-{wall[case].high:.2f})",
                f"{thread.median:.2f} µs",
                f"{cpu.median:.2f} µs",
                ratio,
                f"{close.median:.2f} s",
                forwarded,
                target,
                result,
            ]
        )
    reps = max((len(runs) for runs in samples.values()), default=0)
    header = [
        "case",
        f"wall per call, median (min-max, {reps} reps)",
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
    parser.add_argument("--quick", action="store_true", help="3 reps: 20k calls; 300 steps")
    parser.add_argument("--calls", type=int, help="tight loop: calls (default 100k)")
    parser.add_argument("--steps", type=int, help="steps loop: steps (default 1,000)")
    parser.add_argument("--step-ms", type=float, default=5.0, help="work per step (default 5)")
    parser.add_argument("--metrics", type=int, default=8, help="log_metric calls per step")
    parser.add_argument("--reps", type=int, help="repetitions (default 5)")
    parser.add_argument("--cases", help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = {
        "calls": args.calls or (20_000 if args.quick else 100_000),
        "steps": args.steps or (300 if args.quick else 1_000),
        "step_us": int(args.step_ms * 1000),
        "metrics": args.metrics,
    }
    if args.child:
        print(json.dumps(run_case_in_child(args.child, size)))
        return 0
    reps = args.reps or (3 if args.quick else 5)
    cases = args.cases.split(",") if args.cases else DEFAULT_CASES
    child_args = [
        f"--calls={size['calls']}",
        f"--steps={size['steps']}",
        f"--step-ms={args.step_ms}",
        f"--metrics={size['metrics']}",
    ]
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    samples: dict[str, list[dict[str, float]]] = {case: [] for case in cases}
    skipped: dict[str, str] = {}
    for rep in range(reps):
        for case in cases:
            if case in skipped:
                continue
            print(f"[{rep + 1}/{reps}] {case}", file=sys.stderr, flush=True)
            try:
                data = run_child(SCRIPT, ["--child", case, *child_args], timeout=900)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(exc, file=sys.stderr)
                continue
            if "skipped" in data:
                skipped[case] = data["skipped"]
                continue
            samples[case].append(data)
    table, missed = build_report(samples)
    print(
        f"## expmate mirror benchmarks (tight: {size['calls']:,} calls; steps: {size['steps']:,} "
        f"steps of {size['step_us'] / 1000:g} ms and {size['metrics']} metrics; {reps} reps)\n"
    )
    print(f"Machine: {machine_description()}")
    print(
        f"1-minute load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
        f"end (on {os.cpu_count()} CPUs).\n"
    )
    print(table)
    for case, why in skipped.items():
        print(f"\nSkipped {CASES[case][4]}: {why}.")
    print(f"\nTargets missed: {len(missed)}" + "".join(f"\n- {m}" for m in missed))
    print(f"\nTotal benchmark time {time.perf_counter() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
