"""CheckpointManager: checkpoints that agree with the metrics, saved and loaded by every rank.

Every method is a collective: under torchrun every rank calls it at the same point, and the
manager decides who writes (rank 0 for a plain file, every rank its shards for a sharded state).
The monitored value of a checkpoint is the logger's value of that step, which under reduction is
the global one (the value in ``metrics.csv``), never rank 0's own. See ``docs/checkpoints.md``.

The manager is built here; ``save()`` comes from :mod:`expmate.torch._checkpoint_saving`, the
loading methods from :mod:`expmate.torch._checkpoint_loading`.

Example:
    >>> manager = CheckpointManager(logger=logger, monitor="val/loss")  # doctest: +SKIP
    >>> start = manager.resume(model, optimizer=optimizer)  # doctest: +SKIP
    >>> manager.save(step, model=model, optimizer=optimizer)  # doctest: +SKIP
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from expmate.torch import _checkpoint_reader as reader
from expmate.torch._checkpoint_args import (
    ERRORS,
    check_logger,
    count,
    directory_problem,
    monitor_spec,
    positive,
)
from expmate.torch._checkpoint_group import CheckpointGroup, CheckpointSyncError
from expmate.torch._checkpoint_index import best_entry, read_manifest, rebuild
from expmate.torch._checkpoint_loading import CheckpointError, CheckpointLoading
from expmate.torch._checkpoint_writer import CheckpointWriter

__all__ = ["CheckpointError", "CheckpointManager", "CheckpointSyncError"]


class CheckpointManager(CheckpointLoading):
    """Save, keep and load checkpoints whose "best" is the best global value of the metrics.

    Args:
        directory: where checkpoints go; default ``<run_dir>/checkpoints``. Every rank must see
            the same directory (a shared filesystem across machines).
        logger: the run's :class:`expmate.ExperimentLogger` (metric values, events).
        keep_last: keep the newest ``keep_last`` checkpoints; None keeps all of them.
        keep_best: also keep the best ``keep_best`` by the monitored value.
        monitor: ``"split/name"`` of the metric that ranks checkpoints, e.g. ``"val/loss"``.
        mode: ``"min"`` or ``"max"``; default from the name, as for best.json.
        every_steps: ``save()`` writes only at steps divisible by it (unless ``force=True``).
        async_save: copy the state's tensors into host memory at ``save()``, then serialise and
            write them from a background thread; the next call of the manager waits for it.
            Costs one host copy of the saved tensors while it is written.
        timeout: seconds a rank waits for the others at a collective (covers rank 0's write).

    Raises:
        TypeError, ValueError: a bad argument, named (before any collective).
        NotADirectoryError, PermissionError, OSError: the directory cannot hold checkpoints
            (raised on every rank alike).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        logger: Any,
        keep_last: int | None = 2,
        keep_best: int = 1,
        monitor: str | None = None,
        mode: str | None = None,
        every_steps: int | None = None,
        async_save: bool = False,
        timeout: float = 1800.0,
    ) -> None:
        check_logger(logger)
        self.keep_last = count(keep_last, "keep_last", allow_none=True)
        self.keep_best = count(keep_best, "keep_best")
        self._split, self._name, self.mode = monitor_spec(monitor, mode)
        self.monitor = monitor
        if self.keep_last == 0 and (self.keep_best == 0 or monitor is None):
            raise ValueError(
                f"keep_last=0 with keep_best={keep_best} and monitor={monitor!r} keeps no "
                "checkpoint: keep some of the last ones, or the best ones of a monitor"
            )
        self.every_steps = (
            None if every_steps is None else positive(every_steps, "every_steps", integer=True)
        )
        if not isinstance(async_save, bool):
            raise TypeError(f"async_save must be True or False, not {async_save!r}")
        self.async_save = async_save
        self.timeout = float(positive(timeout, "timeout", integer=False))
        self.logger = logger
        self.directory = (
            Path(directory) if directory is not None else Path(logger.run_dir) / "checkpoints"
        )
        self.extra = None
        self.closed = False
        self._group = CheckpointGroup(self.timeout)
        self.rank, self.world_size = self._group.rank, self._group.world_size
        self._check_directory()
        self._writer = self._start_writer() if self.rank == 0 else None
        entries = self._writer.snapshot() if self._writer is not None else None
        self._entries = self._group.broadcast(entries, "start-up")
        self._corrupt = set()
        self._warned = set()
        self._thread = None
        self._future = None
        self._sharded_pending = None
        self._dcp_async_group = None

    def _check_directory(self) -> None:
        problems = self._group.all_gather(directory_problem(self.directory), "start-up")
        found = next((p for p in problems if p is not None), None)
        if found is not None:
            self._group.close()
            raise ERRORS[found[0]](found[1])

    def _start_writer(self) -> CheckpointWriter:
        manifest, problem = read_manifest(self.directory)
        entries, stale, notes = rebuild(self.directory, manifest, self.monitor, reader.recover)
        for note in [problem, *notes]:
            if note is not None:
                self.logger.warning(note, checkpoint="manifest")
        policy = {
            "keep_last": self.keep_last,
            "keep_best": self.keep_best,
            "monitor": self.monitor,
            "mode": self.mode,
        }
        return CheckpointWriter(self.directory, self.logger, entries, stale, policy)

    # ------------------------------------------------------------------ what is there

    @property
    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None (as of the last collective call)."""
        return self._entries[-1].step if self._entries else None

    @property
    def best_step(self) -> int | None:
        """Step of the checkpoint with the best monitored value, or None."""
        best = best_entry(self._entries, self.mode)
        return best.step if best is not None else None

    def list(self) -> builtins.list[dict[str, Any]]:
        """The complete checkpoints, oldest first: ``step``, ``file``, ``path``, ``kind``,
        ``size``, ``time``, ``seconds``, ``value`` (as of the last collective call)."""
        return [{**e.as_json(), "path": str(self.directory / e.file)} for e in self._entries]

    # ------------------------------------------------------------------ waiting, closing

    def wait(self) -> None:
        """Finish the save in flight and agree on the list of checkpoints (a collective)."""
        self._check_open()
        self._sync_point("wait")

    def close(self, *, sync: bool = True) -> None:
        """Finish the save in flight, then release the manager's process group (a collective
        unless ``sync=False``). Closing twice is harmless."""
        if self.closed:
            return
        try:
            if sync:
                self._sync_point("close")
            else:
                self._finish_local()
        finally:
            self.closed = True
            self._group.close()
            if self._dcp_async_group is not None:
                import torch.distributed as dist

                if dist.is_initialized():
                    dist.destroy_process_group(self._dcp_async_group)

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # On an exception the other ranks may never reach a collective: close without one.
        self.close(sync=exc_type is None)

    def __repr__(self) -> str:
        return (
            f"CheckpointManager(directory={str(self.directory)!r}, monitor={self.monitor!r}, "
            f"latest_step={self.latest_step}, best_step={self.best_step})"
        )
