"""Worker for tests/torch/test_elastic_restart.py: an elastic restart that resumes a checkpoint.

Usage: ``restart_worker.py RUN_DIR`` under ``torchrun --max-restarts=1``. Every step logs the
reduced ``train/loss`` and ``val/loss``. After step 2 rank 0 saves a "checkpoint" (training
resumes at step 3). In attempt 0, after step 3 (whose val/loss is a fluke, 0.01), rank 0 flushes
and waits to be stopped while rank 1 dies (``os._exit(1)``); torchrun stops rank 0 with SIGTERM
and restarts both. Attempt 1 loads the checkpoint, calls ``logger.resume(step=3)`` and logs steps
3..5. Each rank writes ``RUN_DIR/result_rank{r}.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from expmate import ExperimentLogger
from expmate.torch import mp

STEPS = 6
VAL_LOSS = ([1.0, 0.5, 0.4, 0.01], [None, None, None, 0.35, 0.25, 0.2])  # per attempt


def main() -> None:
    run_dir = Path(sys.argv[1])
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    rank, _, _ = mp.setup_ddp("gloo", timeout=30)
    logger = ExperimentLogger(run_dir, run_id="elastic", reduce="mean", sync_timeout=30)
    checkpoint = run_dir / "checkpoint.json"
    start = json.loads(checkpoint.read_text())["next_step"] if checkpoint.exists() else 0
    if start:
        logger.resume(step=start)
    for step in range(start, STEPS):
        logger.log_metric(step, "train", "loss", float(rank + step))
        logger.log_metric(step, "val", "loss", VAL_LOSS[attempt][step])
        logger.sync()
        if step == 2:
            if rank == 0:
                (run_dir / "checkpoint.tmp").write_text(json.dumps({"next_step": 3}))
                os.replace(run_dir / "checkpoint.tmp", checkpoint)
            mp.barrier()
        if attempt == 0 and step == 3:
            if rank == 1:
                os._exit(1)  # a crash in the middle of training
            logger.flush_files()
            time.sleep(300)  # until torchrun stops this rank (SIGTERM)
    result = {
        "attempt": attempt,
        "best": logger.get_best_metric("loss", split="val"),
        "last": logger.get_last_metric("loss", split="val"),
    }
    logger.close()
    (run_dir / f"result_rank{rank}.json").write_text(json.dumps(result))
    mp.cleanup_ddp()


if __name__ == "__main__":
    main()
