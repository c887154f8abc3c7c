"""TensorBoard: event files written with TensorBoard's own writer (no torch, no TensorFlow)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from expmate.mirrors.base import MetricRow, Mirror, RunInfo, flat_config, require_package


class TensorBoardMirror(Mirror):
    """Scalars ``split/name`` at each step, the config as hyperparameters, ``best/<key>`` at close.

    Values are written as 64-bit floats (TensorBoard's writer keeps the dtype it is given), so
    they read back exactly as in ``metrics.csv``.

    Args:
        log_dir: where the event files go; None means ``<run_dir>/tensorboard``.

    Raises:
        ModuleNotFoundError: the ``tensorboard`` package is not installed (the message names
            ``pip install "expmate[tensorboard]"``).
    """

    name = "tensorboard"

    def __init__(self, log_dir: str | os.PathLike[str] | None = None) -> None:
        require_package("tensorboard", extra="tensorboard", mirror=self.name)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self._writer: Any = None
        self._libs: Any = None
        self._scalar_metadata: Any = None
        self._described: set[str] = set()  # tags whose metadata was written (once per tag)

    def start(self, run: RunInfo) -> None:
        import numpy as np
        from tensorboard.compat.proto import event_pb2
        from tensorboard.plugins.scalar import metadata
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        from tensorboard.util import tensor_util

        self._libs = (np.float64, event_pb2.Event, tensor_util.make_tensor_proto)
        self._scalar_metadata = metadata.create_summary_metadata(None, None)
        log_dir = self.log_dir if self.log_dir is not None else run.run_dir / "tensorboard"
        self._writer = EventFileWriter(str(log_dir))
        if run.config:
            from tensorboard.plugins.hparams import summary_v2

            summary = summary_v2.hparams_pb(flat_config(run.config), trial_id=run.run_id)
            self._writer.add_event(event_pb2.Event(wall_time=time.time(), summary=summary))

    def _scalar(self, tag: str, value: float | int, step: int, wall_time: float) -> Any:
        """A scalar event; the scalar plugin's metadata rides with a tag's first value only."""
        float64, event_type, make_tensor = self._libs
        event = event_type(wall_time=wall_time, step=step)
        entry = event.summary.value.add(tag=tag, tensor=make_tensor(float64(value)))
        if tag not in self._described:
            self._described.add(tag)
            entry.metadata.CopyFrom(self._scalar_metadata)
        return event

    def log_metrics(self, rows: list[MetricRow]) -> None:
        for step, split, name, value, wall_time in rows:
            self._writer.add_event(self._scalar(f"{split}/{name}", value, step, wall_time))
        self._writer.flush()

    def log_best(self, best: dict[str, dict[str, Any]]) -> None:
        now = time.time()
        for key, entry in best.items():
            self._writer.add_event(self._scalar(f"best/{key}", entry["value"], entry["step"], now))

    def finish(self, outcome: dict[str, Any]) -> None:
        self._writer.close()
