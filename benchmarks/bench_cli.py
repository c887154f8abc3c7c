"""How fast the ``expmate`` command reads runs: ``ls`` over many runs, ``show`` of a large one.

Targets (DESIGN.md, "Reading runs"):

- ``expmate ls`` over 1,000 run directories of 10,000 metric rows each: under 2 s, and at least
  10x faster than loading the same runs with ``pandas.read_csv`` per file;
- ``expmate show`` of a run with 1M metric rows and 8 ranks: under 3 s.

The runs are written by the real logger (once; kept under ``--data`` for later runs of the
script). ``expmate`` is timed as a command, interpreter start-up included, with its output sent
to a pipe; ``pandas.read_csv`` is timed in this process with pandas already imported. A report,
not a test: prints a markdown table and exits 0 whatever it finds.

Usage:
    .venv/bin/python benchmarks/bench_cli.py                # 1,000 x 10,000 rows; 1M rows x 8 ranks
    .venv/bin/python benchmarks/bench_cli.py --runs 100     # a quicker, smaller check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._timing import REPO_ROOT, Stats, machine_description, markdown_table

TRAIN = ("loss", "accuracy", "lr", "grad_norm", "weight_norm", "tokens_per_s", "step_time")
TRAIN += ("data_time", "memory_gb")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_run(run_dir: Path, index: int, rows: int) -> None:
    """One run of ``rows`` metric rows: 9 train metrics a step, val loss/accuracy every 2 steps,
    a config, stages and a few messages."""
    import expmate.config
    from expmate import ExperimentLogger, parse_config

    lr = (1, 3)[index % 2] * 10 ** -(1 + index % 4)
    parse_config(
        [f"training.lr={lr}", f"model.width={64 * (1 + index % 3)}"],
        defaults={
            "run_id": run_dir.name,
            "training": {"lr": 0.1, "epochs": 10},
            "model": {"width": 64},
        },
    )
    logger = ExperimentLogger(run_dir, console_output=False, flush_interval=3600)
    expmate.config._active = None
    logger.info(f"Starting experiment: {run_dir.name}")
    steps = rows // 10
    for step in range(steps):
        if step % (steps // 10) == 0:
            logger.info(f"epoch {step // (steps // 10)}")
        for k, name in enumerate(TRAIN):
            logger.log_metric(step, "train", name, 1.0 / (step + 1 + k) + lr)
        if step % 2 == 1:
            logger.log_metric(step, "val", "loss", 2.0 / (step + 1) + lr)
            logger.log_metric(step, "val", "accuracy", 1.0 - 1.0 / (step + 2))
    logger.close()


def write_big_run(run_dir: Path, rows: int, ranks: int) -> int:
    """A run of ``ranks`` ranks (one process standing in for each) with ``rows`` metric rows on
    rank 0; every rank logs stages, timers every 100 steps and a warning. Returns the events."""
    from expmate import ExperimentLogger

    os.environ["WORLD_SIZE"] = str(ranks)  # what torchrun would set: summary.json says 8
    loggers = [
        ExperimentLogger(run_dir, rank=r, console_output=False, flush_interval=3600)
        for r in range(ranks)
    ]
    del os.environ["WORLD_SIZE"]
    steps = rows // 10
    epochs = 100
    per_epoch = steps // epochs
    for epoch in range(epochs):
        for r, logger in enumerate(loggers):
            with logger.stage("epoch", epoch=epoch), logger.stage("train"):
                for step in range(epoch * per_epoch, (epoch + 1) * per_epoch):
                    if r == 0:
                        for k, name in enumerate(TRAIN):
                            logger.log_metric(step, "train", name, 1.0 / (step + 1 + k))
                        logger.log_metric(step, "val", "loss", 2.0 / (step + 1))
                    if step % 100 == 0:
                        for timer in ("forward", "backward", "optimizer"):
                            with logger.timer(timer):
                                pass
            if epoch == 50 and r == ranks - 1:
                logger.warning("loss spike")
    for logger in loggers:
        logger.close()
    return sum(1 for path in run_dir.glob("events*.jsonl") for _ in path.open())


def ensure_data(
    data: Path, runs: int, rows: int, big_rows: int, ranks: int
) -> tuple[Path, Path, int]:
    """Write the runs unless ``data`` already holds them (same sizes); returns their paths."""
    marker = data / "sizes.json"
    sizes = {"runs": runs, "rows": rows, "big_rows": big_rows, "ranks": ranks}
    many, big = data / "many", data / "big" / "run"
    if marker.exists() and json.loads(marker.read_text()).get("sizes") == sizes:
        return many, big, json.loads(marker.read_text())["events"]
    shutil.rmtree(data, ignore_errors=True)
    many.mkdir(parents=True)
    start = time.perf_counter()
    for i in range(runs):
        if i % 100 == 0:
            _log(f"writing run {i}/{runs} ({time.perf_counter() - start:.0f} s)")
        write_run(many / f"run_{i:04d}", i, rows)
    _log(f"writing the {big_rows:,}-row, {ranks}-rank run")
    events = write_big_run(big, big_rows, ranks)
    marker.write_text(json.dumps({"sizes": sizes, "events": events}))
    return many, big, events


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(argv: list[str], reps: int) -> tuple[Stats, Stats]:
    """Wall and CPU seconds of ``python -m expmate ARGV`` (output to a pipe), ``reps`` times."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    wall, cpu = [], []
    for _ in range(reps):
        start, used = time.perf_counter(), _children_cpu()
        proc = subprocess.run(
            [sys.executable, "-m", "expmate", *argv], capture_output=True, env=env, check=False
        )
        wall.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - used)
        if proc.returncode != 0:
            raise RuntimeError(f"expmate {' '.join(argv)}: {proc.stderr.decode()[-2000:]}")
    return Stats(wall), Stats(cpu)


def time_pandas(paths: list[Path], reps: int) -> tuple[Stats, Stats]:
    """Wall and CPU seconds of ``pd.read_csv`` of every metrics file (pandas imported first)."""
    import pandas as pd

    wall, cpu = [], []
    for _ in range(reps):
        start, used = time.perf_counter(), time.process_time()
        for path in paths:
            pd.read_csv(path)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - used)
    return Stats(wall), Stats(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "expmate_bench_cli"
    )
    args = parser.parse_args()

    many, big, events = ensure_data(args.data, args.runs, args.rows, args.big_rows, args.ranks)
    load_start = os.getloadavg()[0]
    _log("timing expmate ls")
    ls = time_command(["ls", str(many)], args.reps)
    _log("timing pandas.read_csv")
    pandas = time_pandas(sorted(many.glob("*/metrics.csv")), max(1, args.reps // 2))
    _log("timing expmate show")
    show = time_command(["show", str(big)], args.reps)
    summary = big / "summary.json"
    aside = big.parent / "summary.json.aside"
    summary.rename(aside)
    try:
        _log("timing expmate show without summary.json")
        show_files = time_command(["show", str(big)], max(1, args.reps // 2))
    finally:
        aside.rename(summary)
    load_end = os.getloadavg()[0]

    def cell(timed: tuple[Stats, Stats]) -> list[str]:
        wall, cpu = timed
        return [f"{wall.median:.2f} s", f"{wall.low:.2f}-{wall.high:.2f}", f"{cpu.median:.2f} s"]

    ratio = pandas[0].median / ls[0].median
    cpu_ratio = pandas[1].median / ls[1].median
    rows = [
        [f"`expmate ls` over {args.runs:,} runs x {args.rows:,} rows", *cell(ls), "< 2 s", "PASS" if ls[0].median < 2 else "MISS"],
        [f"`pd.read_csv` of the same {args.runs:,} metrics.csv files", *cell(pandas), "-", "-"],
        ["ratio: pandas / `expmate ls`", f"{ratio:.1f}x", "-", f"{cpu_ratio:.1f}x", ">= 10x", "PASS" if ratio >= 10 else "MISS"],
        [f"`expmate show` of {args.big_rows:,} rows, {args.ranks} ranks, {events:,} events", *cell(show), "< 3 s", "PASS" if show[0].median < 3 else "MISS"],
        ["the same without summary.json (metrics.csv parsed)", *cell(show_files), "-", "-"],
    ]  # fmt: skip
    print(f"#### expmate command benchmarks ({args.reps} reps, medians)\n")
    print(f"Machine: {machine_description()}")
    print(f"1-minute load average {load_start:.1f} at the start, {load_end:.1f} at the end.\n")
    header = ["measurement", "wall median", "wall min-max", "CPU median", "target (wall)", "result"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
