"""Worker for tests/cli/test_tail.py: two ranks under torchrun log in turns, within a second.

Usage: tail_worker.py RUN_DIR. The ranks take turns through their log files (no collective, so
no torch import): rank 0, then rank 1 (a message of two lines), then rank 0 twice (with messages
hidden by ``log_every`` in between), then rank 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from expmate import ExperimentLogger


def wait_for(path: Path, text: str) -> None:
    deadline = time.monotonic() + 60
    while not (path.exists() and text in path.read_text(encoding="utf-8")):
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {text!r} in {path}")
        time.sleep(0.01)


run_dir = Path(sys.argv[1])
logger = ExperimentLogger(run_dir=run_dir, console_output=False)
if logger.rank == 0:
    logger.info("first, from rank 0")
    logger.flush()
    wait_for(run_dir / "exp_rank1.log", "second, from rank 1")
    for i in range(3):
        with logger.log_every(every=3, key="hidden"):
            logger.info("third, from rank 0" if i == 0 else "hidden from exp.log")
    logger.warning("fourth, from rank 0")
    logger.flush()
else:
    wait_for(run_dir / "exp.log", "first, from rank 0")
    logger.info("second, from rank 1\nits second line")
    logger.flush()
    wait_for(run_dir / "exp.log", "fourth, from rank 0")
    logger.info("fifth, from rank 1")
logger.close()
