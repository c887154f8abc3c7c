"""The loading half of a checkpoint manager: ``load_latest()``, ``load_best()``, ``resume()``.

Each is a collective: the save in flight is finished first, then every rank reads the same
checkpoint, and one that any rank cannot read is skipped on every rank (with a warning) and the
next one is tried. See :mod:`expmate.torch._checkpoint_reader` for what one rank does.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

from expmate.torch import _checkpoint_reader as reader
from expmate.torch._checkpoint_args import checked_objects
from expmate.torch._checkpoint_index import Entry, ranked
from expmate.torch._checkpoint_saving import CheckpointSaving
from expmate.torch._checkpoint_state import restore_rng
from expmate.torch._checkpoint_writer import human_size, shown_path


class CheckpointError(RuntimeError):
    """No checkpoint could be loaded although some exist (each was reported as it failed)."""

    __module__ = "expmate.torch.checkpoint"  # where users import it from, as tracebacks show


class CheckpointLoading(CheckpointSaving):
    """Loading checkpoints on every rank; a base of :class:`expmate.torch.CheckpointManager`."""

    world_size: int
    extra: Any

    def load_latest(
        self, *, map_location: Any = None, weights_only: bool = True
    ) -> dict[str, Any] | None:
        """The newest checkpoint that loads, as a dict (a collective); None when there is none.

        A checkpoint that fails to load on any rank is skipped with a warning and the previous
        one is tried. Keys: ``format``, ``step``, ``model``, ``optimizer``/``scheduler``/``scaler``
        when saved, ``extra``, ``rng`` (one state per rank), ``world_size``, ``monitor``.

        Args:
            map_location: where tensors go; default this rank's own device (``cuda:<current>``
                with CUDA, else the CPU), never every rank onto one GPU.
            weights_only: ``torch.load``'s safe loading; pass False for an ``extra`` holding
                objects of your own classes (only for files you trust).

        Raises:
            CheckpointError: checkpoints exist but none of them loads.
        """
        self._check_open()
        self._sync_point("load_latest")
        found = self._load_first(list(reversed(self._entries)), map_location, weights_only, None)
        return None if found is None else found[1]

    def load_best(
        self, *, map_location: Any = None, weights_only: bool = True
    ) -> dict[str, Any] | None:
        """The best checkpoint by the monitored value that loads (as :meth:`load_latest`).

        Raises:
            ValueError: the manager has no monitor.
            CheckpointError: ranked checkpoints exist but none of them loads.
        """
        self._check_open()
        if self.monitor is None:
            raise ValueError("load_best() needs a monitor: CheckpointManager(monitor='val/loss')")
        self._sync_point("load_best")
        found = self._load_first(ranked(self._entries, self.mode), map_location, weights_only, None)
        return None if found is None else found[1]

    def resume(
        self,
        model: Any,
        *,
        optimizer: Any = None,
        scheduler: Any = None,
        scaler: Any = None,
        map_location: Any = None,
        restore_rng: bool = True,
        strict: bool = True,
        weights_only: bool = True,
    ) -> int | None:
        """Load the newest complete checkpoint into the given objects on every rank (a collective).

        Restores every rank's random number generator states, keeps ``extra`` in
        :attr:`extra`, and tells the logger: ``logger.resume(step + 1)`` when the logger has it
        (rows of earlier attempts from the next step on are superseded), else a ``resumed``
        checkpoint event.

        Returns:
            The step of the checkpoint (training continues with ``step + 1``), or None when there
            is no checkpoint yet (a fresh start).
        """
        self._check_open()
        objects = checked_objects(model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        self._sync_point("resume")
        target = {"model": model, "strict": strict, **objects}
        found = self._load_first(list(reversed(self._entries)), map_location, weights_only, target)
        if found is None:
            return None
        entry, data = found
        if restore_rng:
            self._restore_rng(data)
        self.extra = data.get("extra")
        self._tell_logger(entry)
        return entry.step

    def _load_first(
        self,
        order: list[Entry],
        map_location: Any,
        weights_only: bool,
        target: dict[str, Any] | None,
    ) -> tuple[Entry, dict[str, Any]] | None:
        """Load the first of ``order`` that every rank can read; skip (and report) the others."""
        location = reader.location_of(map_location)
        for entry in order:
            started = time.monotonic()
            data, problem = self._read(entry, location, weights_only, full=target is None)
            problems = self._group.all_gather(problem, "load")
            refused = next((p[1] for p in problems if p and p[0] == "refused"), None)
            if refused is not None:
                raise pickle.UnpicklingError(refused)
            failed = [(r, p[1]) for r, p in enumerate(problems) if p]
            if not failed:
                if target is not None:
                    reader.apply(self.directory, entry, data, target, self._group.group)
                self._event_loaded(entry, time.monotonic() - started)
                return entry, data
            self._skip(entry, failed)
        if order:
            raise CheckpointError(
                f"none of the {len(order)} checkpoints in {self.directory} could be loaded "
                "(each failure was logged as a 'corrupt' checkpoint event)"
            )
        return None

    def _read(
        self, entry: Entry, location: Any, weights_only: bool, *, full: bool
    ) -> tuple[dict[str, Any], tuple[str, str] | None]:
        """This rank's reading of ``entry``: its data, or ``{}`` and what stopped it."""
        try:
            data = reader.read(
                self.directory, entry, location, weights_only, full=full, group=self._group.group
            )
        except reader.RefusedError as exc:
            return {}, ("refused", str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure to read means: skip it
            return {}, ("corrupt", reader.short_error(exc))
        return data, None

    def _skip(self, entry: Entry, failed: list[tuple[int, str]]) -> None:
        self._corrupt.add(entry.file)
        self._entries = [e for e in self._entries if e.file != entry.file]
        if self.rank != 0:
            return
        by_error: dict[str, list[int]] = {}
        for rank, text in failed:
            by_error.setdefault(text, []).append(rank)
        error = "; ".join(
            f"rank{'s' if len(r) > 1 else ''} {', '.join(map(str, r))}: {text}"
            for text, r in by_error.items()
        )
        where = self._where(entry.file)
        self.logger.warning(
            f"Checkpoint of step {entry.step} ({where}) could not be loaded and is skipped "
            f"({error}); it will be moved aside to {where}.corrupt at the next save",
            checkpoint="corrupt",
            step=entry.step,
            file=where,
            error=error,
        )

    def _restore_rng(self, data: dict[str, Any]) -> None:
        states = data.get("rng") or []
        if len(states) != self.world_size:
            self._warn_once(
                "rng",
                f"the checkpoint was saved by {len(states)} ranks, this job has "
                f"{self.world_size}: random number generator states were not restored",
            )
            return
        for note in restore_rng(states[self.rank]):
            self.logger.warning(f"Checkpoint resume: {note}", checkpoint="rng")

    def _tell_logger(self, entry: Entry) -> None:
        resume = getattr(self.logger, "resume", None)
        if callable(resume):
            resume(entry.step + 1)
            return
        self.logger.info(
            f"Resumed from the checkpoint of step {entry.step} ({self._where(entry.file)}); "
            f"training continues at step {entry.step + 1}",
            checkpoint="resumed",
            step=entry.step,
            file=self._where(entry.file),
        )

    def _event_loaded(self, entry: Entry, seconds: float) -> None:
        where = self._where(entry.file)
        self.logger.info(
            f"Checkpoint loaded: step {entry.step} from {where} ({human_size(entry.size)} in "
            f"{seconds:.2f}s)",
            checkpoint="loaded",
            step=entry.step,
            file=where,
            size=entry.size,
            seconds=seconds,
        )

    def _where(self, name: str) -> str:
        return shown_path(self.directory / name, Path(self.logger.run_dir))
