"""TensorBoard: event files written with TensorBoard's own writer (no torch, no TensorFlow)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from expmate.mirrors.base import MetricRow, Mirror, RunInfo, flat_config, require_package


class TensorBoardMirror(Mirror):
    """Scalars ``split/name`` at each step, the config as hyperparameters, ``best/<key>`` at close.

    Values are written as 64-bit float tensors, so they read back exactly as in ``metrics.csv``
    (``add_scalar`` writers round to 32 bits).

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
        from tensorboard.compat.proto import event_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.plugins.scalar import metadata
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._libs = (
            event_pb2.Event,
            tensor_pb2.TensorProto,
            types_pb2.DT_DOUBLE,
            tensor_shape_pb2.TensorShapeProto(),  # a scalar's shape: no dimensions
        )
        self._scalar_metadata = metadata.create_summary_metadata(None, None)
        log_dir = self.log_dir if self.log_dir is not None else run.run_dir / "tensorboard"
        # The writer hands events to its own thread through a queue of max_queue_size (default
        # 10, a thread switch every 10 events); log_metrics flushes after each batch, which
        # bounds what waits there to one batch.
        self._writer = EventFileWriter(str(log_dir), max_queue_size=0)
        if run.config:
            from tensorboard.plugins.hparams import summary_v2

            summary = summary_v2.hparams_pb(flat_config(run.config), trial_id=run.run_id)
            self._writer.add_event(event_pb2.Event(wall_time=time.time(), summary=summary))

    def _scalar(self, tag: str, value: float | int, step: int, wall_time: float) -> Any:
        """A scalar event; the scalar plugin's metadata rides with a tag's first value only."""
        event_type, tensor_type, double, scalar_shape = self._libs
        event = event_type(wall_time=wall_time, step=step)
        # The proto tensorboard.util.tensor_util.make_tensor_proto builds for a float64 scalar,
        # made directly (six times faster).
        tensor = tensor_type(dtype=double, double_val=[float(value)], tensor_shape=scalar_shape)
        entry = event.summary.value.add(tag=tag, tensor=tensor)
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
