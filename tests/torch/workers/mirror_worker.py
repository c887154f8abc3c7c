"""Worker for tests/torch/test_mirrors_ddp.py: mirrors under torchrun (2 ranks, reduced metrics).

Usage: mirror_worker.py RUN_DIR. Every rank builds the same logger with a TensorBoard mirror and
a mirror that writes what it receives to ``RUN_DIR/mirror_rank{r}.json`` (only if started).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from expmate import ExperimentLogger
from expmate.mirrors import MetricRow, Mirror, RunInfo
from expmate.torch import mp


class FileMirror(Mirror):
    """Writes the rows it got, and its best values, to a file named after this process's rank."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[list[Any]] = []
        self.best: dict[str, Any] = {}

    def start(self, run: RunInfo) -> None:
        self.path.write_text("started")

    def log_metrics(self, rows: list[MetricRow]) -> None:
        self.rows += [[r.step, r.split, r.name, r.value] for r in rows]

    def log_best(self, best: dict[str, dict[str, Any]]) -> None:
        self.best = best

    def finish(self, outcome: dict[str, Any]) -> None:
        self.path.write_text(json.dumps({"rows": self.rows, "best": self.best}))


def main() -> None:
    run_dir = Path(sys.argv[1])
    rank, _, _ = mp.setup_ddp("gloo")
    mirror = FileMirror(run_dir / f"mirror_rank{os.environ['RANK']}.json")
    logger = ExperimentLogger(
        run_dir, run_id="ddp", reduce="mean", console_output=False, mirror=["tensorboard", mirror]
    )
    for step in range(3):
        logger.log_metric(step, "train", "loss", [1.0, 3.0][rank] + step)  # mean 2 + step
        logger.log_metric(step, "val", "accuracy", [0.5, 0.25][rank], reduce="max")
    logger.log_metric(3, "train", "local_time", 0.1 * (rank + 1), reduce=None)
    logger.close()
    mp.cleanup_ddp()


if __name__ == "__main__":
    main()
