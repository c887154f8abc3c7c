"""A training script for tests/cli/test_sweep.py, started by ``expmate sweep``.

Overrides: ``training.lr``, ``model.width``, ``mode`` (``train``; ``wait``: write ``ready`` with the
pid into the run directory and sleep; ``stubborn``: the same, ignoring SIGINT), ``sleep`` (seconds
before the metric). It fails with ValueError for lr=0.01 and width=64.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from expmate import ExperimentLogger, parse_config

config = parse_config(
    defaults={"training": {"lr": 0.1}, "model": {"width": 32}, "mode": "train", "sleep": 0.0}
)
if config.mode == "stubborn":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
logger = ExperimentLogger(run_dir=config.run_dir)
logger.info(f"lr={config.training.lr} width={config.model.width} mode={config.mode}")
logger.flush()
if config.mode in ("wait", "stubborn"):
    (Path(config.run_dir) / "ready").write_text(str(os.getpid()))
    time.sleep(60)
if (config.training.lr, config.model.width) == (0.01, 64):
    raise ValueError("diverged at lr=0.01")
time.sleep(config.sleep)
logger.log_metric(step=0, split="val", name="loss", value=config.training.lr * config.model.width)
logger.close()
