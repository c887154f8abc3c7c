"""How long CheckpointManager.save() blocks training: synchronous, asynchronous, and plain torch.save.

One process, a model of ``--mib`` MiB of float32 weights, saves interleaved (plain torch.save,
synchronous manager, asynchronous manager) with ``--gap`` seconds of idle "training" between two
saves, so that the three see the same disk and the same load. A report, not a test: it prints a
markdown table and exits 0.

    .venv/bin/python benchmarks/bench_checkpoint.py --mib 64 --saves 8 --gap 1.5
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks._timing import Stats
from expmate import ExperimentLogger
from expmate.torch import CheckpointManager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="MiB of weights saved")
    parser.add_argument("--saves", type=int, default=8, help="saves per case")
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between two saves")
    args = parser.parse_args()
    torch.set_num_threads(1)
    side = int((args.mib * 2**20 / 4) ** 0.5)
    model = torch.nn.Linear(side, side, bias=False)
    work = Path(tempfile.mkdtemp(prefix="expmate_bench_ckpt_"))
    cases: dict[str, list[float]] = {
        "torch.save(path) (not atomic)": [],
        "save()": [],
        "save(), async_save=True": [],
    }
    try:
        logger = ExperimentLogger(work / "run", console_output=False)
        plain = CheckpointManager(work / "sync", logger=logger, keep_last=1)
        background = CheckpointManager(work / "async", logger=logger, keep_last=1, async_save=True)
        for step in range(args.saves):
            for name, save in (
                (
                    "torch.save(path) (not atomic)",
                    lambda s: torch.save(model.state_dict(), work / "plain.pt"),
                ),
                ("save()", lambda s: plain.save(s, model=model)),
                ("save(), async_save=True", lambda s: background.save(s, model=model)),
            ):
                started = time.perf_counter()
                save(step)
                cases[name].append(time.perf_counter() - started)
                time.sleep(args.gap)
        plain.close()
        background.close()
        logger.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    print(
        f"{args.mib} MiB of weights, {args.saves} saves per case, {args.gap}s apart; "
        f"1-minute load average at the end: {load:.2f}\n"
    )
    print("| case | median ms | min ms | max ms | ratio to torch.save |")
    print("|---|---|---|---|---|")
    floor = Stats(cases["torch.save(path) (not atomic)"]).median
    for name, samples in cases.items():
        stats = Stats(samples)
        print(
            f"| {name} | {stats.median * 1e3:.0f} | {stats.low * 1e3:.0f} | "
            f"{stats.high * 1e3:.0f} | {stats.median / floor:.2f} |"
        )


if __name__ == "__main__":
    main()
