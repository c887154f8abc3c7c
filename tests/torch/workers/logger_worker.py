"""Worker for tests/torch/test_logger_ddp.py and test_mp.py: ExperimentLogger under torchrun.

Usage: logger_worker.py RUN_DIR MODE, MODE one of:

- ``main``: rank helpers, per-rank files, reduced metrics (mean weighted, sum, min, max, tensors),
  unreduced metrics, best values, log_every, timer_across_ranks, a mismatch raised on every rank,
  a run directory generated on rank 0 and used by every rank;
- ``nodes``: a short run for a job of several torchrun "nodes";
- ``restart``: rank 1 dies once in the first attempt; the restarted attempt completes.

Each rank writes ``RUN_DIR/result_rank{r}.json`` with what it observed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from expmate import ExperimentLogger
from expmate.torch import MetricMismatchError, mp

VAL_LOSS = ([3.0, 2.0, 1.5], [3.0, 0.5, 5.0])
VAL_ACC = ([0.5, 0.75, 0.625], [1.0, 0.5, 0.25])
SAMPLES = (30, 10)


def epoch_metrics(logger: ExperimentLogger, rank: int, epoch: int) -> None:
    """One epoch of metrics with every reduction."""
    n = SAMPLES[rank]
    local_loss = [1.0, 3.0][rank] + epoch
    logger.log_metric(epoch, "train", "loss_sum", local_loss * n, reduce="sum")
    logger.log_metric(epoch, "train", "samples", n, reduce="sum")
    logger.log_metric(epoch, "train", "loss", local_loss, weight=n)
    logger.log_metric(epoch, "train", "grad_norm", torch.tensor([2.0, 7.0][rank]), reduce="max")
    logger.log_metric(epoch, "train", "lr", torch.tensor([0.5 - rank]), reduce="min")
    logger.log_metric(epoch, "val", "loss", VAL_LOSS[rank][epoch])
    logger.log_metric(epoch, "val", "accuracy", VAL_ACC[rank][epoch], weight=n)
    logger.log_metric(epoch, "train", "local_step_time", 0.1 * (rank + 1), reduce=None)


def train(logger: ExperimentLogger, rank: int, result: dict[str, Any]) -> None:
    """Stages, timers and metrics on every rank, as a training loop would log them."""
    for epoch in range(3):
        with logger.stage("epoch", epoch=epoch):
            with logger.stage("train"), logger.timer("train_epoch"):
                time.sleep(0.01)
            epoch_metrics(logger, rank, epoch)
            with logger.log_every(every=2, key="summary"):
                logger.info(f"Epoch {epoch} summary from rank {rank}")
    logger.sync()
    result["best"] = {
        "val_loss": logger.get_best_metric("loss", split="val"),
        "val_accuracy": logger.get_best_metric("accuracy", split="val"),
    }


def helpers(logger: ExperimentLogger, rank: int, result: dict[str, Any]) -> None:
    """Rank helpers, main_process_only and timer_across_ranks."""
    result["again"] = list(mp.setup_ddp())
    result["helpers"] = [
        mp.get_rank(),
        mp.get_local_rank(),
        mp.get_world_size(),
        mp.is_main_process(),
    ]
    marker = logger.run_dir / "main_only.txt"
    result["main_only"] = mp.main_process_only(lambda: marker.write_text("rank0") and "ran")()
    mp.barrier()
    result["marker_seen"] = marker.read_text()
    with mp.timer_across_ranks(logger, "uneven") as times:
        time.sleep(0.05 + 0.25 * rank)
    result["timer"] = times


def mismatch(logger: ExperimentLogger, rank: int, result: dict[str, Any]) -> None:
    """Rank 0 logs one metric more than rank 1 for step 10: both must raise the same error."""
    logger.log_metric(10, "train", "loss", 1.0)
    if rank == 0:
        logger.log_metric(10, "val", "extra_loss", 1.0)
    try:
        logger.sync()
    except MetricMismatchError as exc:
        result["mismatch"] = str(exc)


def generated_run_dir(run_dir: Path, result: dict[str, Any]) -> None:
    """A logger without run_dir names one (runs/<run_id>) on rank 0 and every rank uses it."""
    where = run_dir.parent / f"{run_dir.name}_generated"
    where.mkdir(exist_ok=True)
    os.chdir(where)
    logger = ExperimentLogger(console_output=False)
    logger.info("generated")
    result["generated"] = str(logger.run_dir.resolve())
    logger.close()


def main_mode(run_dir: Path, rank: int) -> dict[str, Any]:
    result: dict[str, Any] = {"setup": list(mp.setup_ddp("gloo"))}
    logger = ExperimentLogger(run_dir, run_id="ddp", reduce="mean", sync_timeout=30)
    logger.info(f"Rank {rank}: hello")
    helpers(logger, rank, result)
    train(logger, rank, result)
    mismatch(logger, rank, result)
    logger.close()
    generated_run_dir(run_dir, result)
    return result


def nodes_mode(run_dir: Path, rank: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "setup": list(mp.setup_ddp("gloo")),
        "group_rank": os.environ.get("GROUP_RANK"),
    }
    logger = ExperimentLogger(run_dir, run_id="nodes", reduce="mean", sync_timeout=30)
    logger.info(f"Rank {rank}: hello")
    logger.log_metric(0, "val", "loss", float(rank))
    logger.close()
    return result


def restart_mode(run_dir: Path, rank: int) -> dict[str, Any]:
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    result: dict[str, Any] = {"setup": list(mp.setup_ddp("gloo", timeout=30)), "attempt": attempt}
    logger = ExperimentLogger(run_dir, run_id="restart", reduce="mean", sync_timeout=20)
    for step in range(6):
        logger.log_metric(step, "train", "loss", float(rank + step))
        logger.sync()
        if attempt == 0 and rank == 1 and step == 2:
            os._exit(1)  # a crash in the middle of training
    logger.close()
    return result


def main() -> None:
    run_dir, mode = Path(sys.argv[1]), sys.argv[2]
    rank = int(os.environ.get("RANK", "0"))
    modes = {"main": main_mode, "nodes": nodes_mode, "restart": restart_mode}
    result = modes[mode](run_dir, rank)
    (run_dir / f"result_rank{rank}.json").write_text(json.dumps(result))
    mp.cleanup_ddp()


if __name__ == "__main__":
    main()
