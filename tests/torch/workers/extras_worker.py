"""Worker for tests/torch/test_extras_ddp.py: run.json's ranks, the progress bar and system
metrics under torchrun.

Usage: extras_worker.py RUN_DIR. Each rank writes ``RUN_DIR/pid_rank{r}.txt``; rank 0 then
creates a logger of its own in ``RUN_DIR/rank0_only`` and writes how long it took.

System samples are taken by the loop itself (the thread's interval is an hour), one at the top
of each step on every rank, so the collective made at step s carries sample s + 1 of both ranks.
Rank 1 holds 64 MiB more than rank 0, so the maximum RSS is always rank 1's.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from expmate import ExperimentLogger
from expmate.torch import mp


def main() -> None:
    run_dir = Path(sys.argv[1])
    rank, _, _ = mp.setup_ddp("gloo")
    (run_dir / f"pid_rank{rank}.txt").write_text(str(os.getpid()))
    logger = ExperimentLogger(
        run_dir, run_id="extras", reduce="mean", sync_timeout=30, system_metrics=3600
    )
    ballast = b"\x01" * (64 << 20) if rank == 1 else b""  # written, so resident
    for step in logger.progress(range(6), desc=f"bar of rank {rank}", postfix=["train/loss"]):
        logger._system.sample()
        logger.log_metric(step, "train", "loss", float(rank + step))
        if step == 3:
            logger.info(f"rank {rank} at step 3")
        time.sleep(0.1)
    logger.close()
    del ballast
    if rank == 0:
        # A logger on rank 0 only: creating and closing it must not wait for rank 1.
        started = time.monotonic()
        alone = ExperimentLogger(run_dir / "rank0_only", console_output=False)
        alone.info("rank 0 alone")
        alone.close()
        (run_dir / "rank0_only_seconds.txt").write_text(f"{time.monotonic() - started:.3f}")
    mp.cleanup_ddp()


if __name__ == "__main__":
    main()
