"""Worker for tests/torch/test_runs_ddp.py: a 2-rank run for the readers and the command.

Usage: run_worker.py RUN_DIR. Rank 1 is the straggler: its ``step`` timer and its part of the
``sync`` timer take 50 ms longer, and it logs a warning. Every rank logs reduced (mean) metrics
and its own unreduced ``train/local_time``; rank 0 logs a checkpoint event.
"""

from __future__ import annotations

import sys
import time

from expmate import ExperimentLogger
from expmate.torch import mp

EPOCHS = 3
STEPS = 3


def main(run_dir: str) -> None:
    rank, _, _ = mp.setup_ddp()
    logger = ExperimentLogger(run_dir, reduce="mean", console_output=False)
    for epoch in range(EPOCHS):
        with logger.stage("epoch", epoch=epoch):
            with logger.stage("train"):
                for i in range(STEPS):
                    step = epoch * STEPS + i
                    with logger.timer("step"):
                        time.sleep(0.05 * rank)
                    logger.log_metric(step, "train", "loss", float(step + rank))
                    logger.log_metric(step, "train", "local_time", 0.1 + rank, reduce=None)
            with logger.stage("validation"):
                logger.log_metric(step, "val", "loss", [4.0, 2.0][rank] / (epoch + 1))
            with mp.timer_across_ranks(logger, "sync"):
                time.sleep(0.05 * rank)
            if rank == 1 and epoch == 1:
                logger.warning("rank 1 is straggling")
            if rank == 0:
                path = f"checkpoints/epoch_{epoch}.pt"
                message = f"Checkpoint saved: step {step} -> {path}"
                logger.info(message, checkpoint="saved", step=step, file=path)
    logger.close()
    mp.cleanup_ddp()


if __name__ == "__main__":
    main(sys.argv[1])
