"""CheckpointManager: checkpoints that agree with the metrics, saved and loaded by every rank.

Every method is a collective: under torchrun every rank calls it at the same point, and the
manager decides who writes (rank 0 for a plain file, every rank its shards for a sharded state).
The monitored value of a checkpoint is the logger's value of that step, which under reduction is
the global one (the value in ``metrics.csv``), never rank 0's own. See ``docs/checkpoints.md``.

Example:
    >>> manager = CheckpointManager(logger=logger, monitor="val/loss")  # doctest: +SKIP
    >>> start = manager.resume(model, optimizer=optimizer)  # doctest: +SKIP
    >>> manager.save(step, model=model, optimizer=optimizer)  # doctest: +SKIP
"""

from __future__ import annotations

import builtins
import os
import pickle
import threading
import time
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from expmate.torch import _checkpoint_reader as reader
from expmate.torch._checkpoint_args import (
    ERRORS,
    check_logger,
    checked_objects,
    checked_step,
    count,
    directory_problem,
    monitor_spec,
    positive,
)
from expmate.torch._checkpoint_group import CheckpointGroup, CheckpointSyncError
from expmate.torch._checkpoint_index import (
    Entry,
    best_entry,
    plain_name,
    ranked,
    read_manifest,
    rebuild,
)
from expmate.torch._checkpoint_state import (
    capture_rng,
    check_picklable,
    is_sharded,
    part_states,
    payload,
    restore_rng,
    sharded_states,
    snapshot,
    unwrap,
)
from expmate.torch._checkpoint_verdict import judge
from expmate.torch._checkpoint_writer import CheckpointWriter, human_size, shown_path

__all__ = ["CheckpointError", "CheckpointManager", "CheckpointSyncError"]

# What torch.save raises for a state it cannot serialise (a lambda in extra, ...): PicklingError,
# TypeError, AttributeError, or a RuntimeError of its zip writer with one of them as context.
_UNPICKLABLE = (pickle.PicklingError, TypeError, AttributeError, RuntimeError)
Outcome = dict[str, Any]  # rank 0's answer to every rank: entries, and raise / path / name


class CheckpointError(RuntimeError):
    """No checkpoint could be loaded although some exist (each was reported as it failed)."""


class CheckpointManager:
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
        self.monitor: str | None = monitor
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
        self.extra: Any = None
        self.closed = False
        self._group = CheckpointGroup(self.timeout)
        self.rank, self.world_size = self._group.rank, self._group.world_size
        self._check_directory()
        self._writer = self._start_writer() if self.rank == 0 else None
        entries = self._writer.snapshot() if self._writer is not None else None
        self._entries: builtins.list[Entry] = self._group.broadcast(entries, "start-up")
        self._corrupt: set[str] = set()
        self._warned: set[str] = set()
        self._thread: threading.Thread | None = None
        self._future: Future[Any] | None = None
        self._sharded_pending: dict[str, Any] | None = None
        self._dcp_async_group: Any = None

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

    # ------------------------------------------------------------------ saving

    def save(
        self,
        step: int,
        *,
        model: Any,
        optimizer: Any = None,
        scheduler: Any = None,
        scaler: Any = None,
        extra: Any = None,
        force: bool = False,
    ) -> Path | None:
        """Save a checkpoint of ``step`` (a collective: every rank calls it with the same step).

        Plain states (a module, DDP-wrapped or not): rank 0 writes one file holding the unwrapped
        module's ``state_dict``, the optimizer/scheduler/scaler states, ``extra`` and every rank's
        random number generator states. Sharded states (FSDP, DTensor): every rank writes its
        shards through torch.distributed.checkpoint. Then the retention policy runs.

        Args:
            step: the training step this state is the result of; ``resume()`` returns it.
            model: the model (its state dict is saved unwrapped from DDP / torch.compile).
            optimizer, scheduler, scaler: saved when given.
            extra: any picklable object saved with it (data-loader position, ...).
            force: save even when ``every_steps`` would skip this step.

        Returns:
            The checkpoint's path (still being written with ``async_save``), or None when
            ``every_steps`` skipped the step or the disk failed (reported once on stderr and as
            an ERROR event; the previous checkpoints are intact and training goes on).

        Raises:
            TypeError, ValueError: bad arguments; ranks passing different steps; a monitor never
                logged (the message lists the metrics that were); ``extra`` not picklable. On
                every rank alike, and nothing is written.
        """
        self._check_open()
        step = checked_step(step)
        objects = checked_objects(model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        if not force and self.every_steps is not None and step % self.every_steps != 0:
            return None
        pending = self._finish_local()
        state = unwrap(model).state_dict()
        item = {
            "step": step,
            "sharded": is_sharded(state),
            "monitor": self._monitored(),
            "pending": pending,
            "rng": capture_rng(),
        }
        items = self._group.gather(item, "save")
        if item["sharded"]:
            return self._save_sharded(step, items, model, objects, extra)
        outcome = None
        if self._writer is not None and items is not None:
            outcome = self._save_plain(step, items, state, objects, extra)
        return self._conclude(self._group.broadcast(outcome, "save"))

    def _monitored(self) -> tuple[Any, int] | None:
        if self.monitor is None:
            return None
        self.logger.sync()  # the step's reduced values are known once its sync has run
        last = self.logger.get_last_metric(self._name, split=self._split)
        return None if last is None else (last["value"], last["step"])

    def _prepare(
        self,
        step: int,
        items: builtins.list[dict[str, Any]],
        parts: dict[str, Any],
        extra: Any,
        model: dict[str, Any] | None,
    ) -> tuple[Outcome | None, dict[str, Any], float | None]:
        """Rank 0: settle the save in flight, judge this one, clean up and build the payload.

        Returns:
            ``(outcome to send when the save is rejected, payload, monitored value)``.
        """
        assert self._writer is not None
        self._settle(items)
        logged = sorted(getattr(getattr(self.logger, "_metrics", None), "last", {}))
        verdict = judge(step, items, self.monitor, logged)
        for key, message in verdict.warnings:
            self._warn_once(key, message)
        if verdict.error is not None:
            return {"raise": verdict.error, "entries": self._writer.snapshot()}, {}, None
        self._writer.clean(self._corrupt)
        monitor = None
        if self.monitor is not None:
            monitor = {"name": self.monitor, "value": verdict.value, "mode": self.mode}
        rng = [it["rng"] for it in items]
        data = payload(
            step, model=model, parts=part_states(parts), extra=extra, rng=rng, monitor=monitor
        )
        return None, data, verdict.value

    def _rejected_extra(self, step: int, exc: BaseException) -> Outcome:
        assert self._writer is not None
        message = f"the checkpoint of step {step} cannot be serialised (is extra picklable?): {exc}"
        return {"raise": ("TypeError", message), "entries": self._writer.snapshot()}

    def _save_plain(
        self,
        step: int,
        items: builtins.list[dict[str, Any]],
        state: dict[str, Any],
        objects: dict[str, Any],
        extra: Any,
    ) -> Outcome:
        """Rank 0: write the file (or start writing it); the outcome for every rank."""
        assert self._writer is not None
        rejected, data, value = self._prepare(step, items, objects, extra, state)
        if rejected is not None:
            return rejected
        path: Path | None = self.directory / plain_name(step)
        try:
            if self.async_save:
                check_picklable(data)
                copied = snapshot(data)  # the copy off the GPU, in host memory
                self._thread = threading.Thread(
                    target=self._write_in_background,
                    args=(step, copied, value),
                    name="expmate-checkpoint",
                )
                self._thread.start()
            elif self._writer.write_file(step, lambda f: torch.save(data, f), value) is None:
                path = None
        except _UNPICKLABLE as exc:
            return self._rejected_extra(step, exc)
        return {"path": path, "entries": self._writer.snapshot(), "cleaned": True}

    def _write_in_background(self, step: int, data: dict[str, Any], value: float | None) -> None:
        assert self._writer is not None
        try:
            self._writer.write_file(step, lambda f: torch.save(data, f), value)
        except Exception as exc:  # noqa: BLE001 - reported; the thread must not die silently
            self._writer.failed(step, plain_name(step), exc)

    def _save_sharded(
        self,
        step: int,
        items: builtins.list[dict[str, Any]] | None,
        model: Any,
        objects: dict[str, Any],
        extra: Any,
    ) -> Path | None:
        """Rank 0 writes ``state.pt``, then every rank its shards, then rank 0 records it."""
        decision = None
        if self._writer is not None and items is not None:
            small = {k: v for k, v in objects.items() if k in ("scheduler", "scaler")}
            decision, data, value = self._prepare(step, items, small, extra, None)
            if decision is None:
                try:
                    name = self._writer.start_sharded(step, lambda f: torch.save(data, f))
                    decision = {"name": name, "value": value, "cleaned": True}
                    decision["entries"] = self._writer.snapshot()
                except _UNPICKLABLE as exc:
                    decision = self._rejected_extra(step, exc)
        decision = self._group.broadcast(decision, "save")
        if decision.get("raise") or decision.get("name") is None:
            return self._conclude(decision)
        path = self.directory / decision["name"]
        pending = {"step": step, "name": decision["name"], "value": decision["value"]}
        pending["started"] = time.monotonic()
        error = None
        try:
            states = sharded_states(model, objects.get("optimizer"))
            if self.async_save:
                self._future = self._async_dcp_save(states, path)
                self._future.add_done_callback(
                    lambda _: pending.__setitem__("done", time.monotonic())
                )
            else:
                import torch.distributed.checkpoint as dcp

                dcp.save(states, checkpoint_id=str(path), process_group=self._group.group)
        except Exception as exc:  # noqa: BLE001 - every rank must learn of it, then it is reported
            error = f"rank {self.rank}: {reader.short_error(exc)}"
        errors = self._group.gather(error, "sharded save")
        outcome = None
        if self._writer is not None and errors is not None:
            failure = next((e for e in errors if e), None)
            if self.async_save and failure is None:
                self._sharded_pending, done = pending, True
            else:
                done = self._finish_sharded(pending, failure) is not None
            outcome = {"entries": self._writer.snapshot(), "path": path if done else None}
        return self._conclude(self._group.broadcast(outcome, "save"))

    def _finish_sharded(self, pending: dict[str, Any], error: str | None) -> Entry | None:
        assert self._writer is not None
        seconds = pending.get("done", time.monotonic()) - pending["started"]
        return self._writer.finish_sharded(
            pending["step"], pending["name"], seconds, pending["value"], error
        )

    def _async_dcp_save(self, states: dict[str, Any], path: Path) -> Future[Any]:
        """torch.distributed.checkpoint's background save, on a gloo group of its own (its thread
        runs collectives while ours run on the main thread; two threads never share a group)."""
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp

        if self._dcp_async_group is None and self._group.group is not None:
            wait = timedelta(seconds=self.timeout)
            self._dcp_async_group = dist.new_group(backend="gloo", timeout=wait)
        future = dcp.async_save(
            states, checkpoint_id=str(path), process_group=self._dcp_async_group
        )
        return future  # type: ignore[return-value]

    def _conclude(self, outcome: Outcome) -> Path | None:
        """Every rank: take rank 0's list of checkpoints; raise its error, or return the path."""
        if outcome.get("cleaned"):
            self._corrupt.clear()
        self._entries = [e for e in outcome["entries"] if e.file not in self._corrupt]
        error = outcome.get("raise")
        if error is not None:
            raise ERRORS[error[0]](error[1])
        path = outcome.get("path")
        return Path(path) if path is not None else None

    # ------------------------------------------------------------------ waiting

    def _finish_local(self) -> str | None:
        """Wait for this rank's save in flight; its error, if it had one."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()  # a failure was reported by the thread itself
        future, self._future = self._future, None
        if future is not None:
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - agreed on, then reported by rank 0
                return f"rank {self.rank}: {reader.short_error(exc)}"
        return None

    def _settle(self, items: builtins.list[dict[str, Any]]) -> None:
        """Rank 0: record the asynchronous sharded save that every rank has now finished."""
        pending, self._sharded_pending = self._sharded_pending, None
        if pending is not None:
            self._finish_sharded(pending, next((i["pending"] for i in items if i["pending"]), None))

    def wait(self) -> None:
        """Finish the save in flight and agree on the list of checkpoints (a collective)."""
        self._check_open()
        self._sync_point("wait")

    def _sync_point(self, what: str) -> None:
        items = self._group.gather({"pending": self._finish_local()}, what)
        entries = None
        if self._writer is not None and items is not None:
            self._settle(items)
            entries = self._writer.snapshot()
        self._entries = [
            e for e in self._group.broadcast(entries, what) if e.file not in self._corrupt
        ]

    # ------------------------------------------------------------------ loading

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
        order: builtins.list[Entry],
        map_location: Any,
        weights_only: bool,
        target: dict[str, Any] | None,
    ) -> tuple[Entry, dict[str, Any]] | None:
        """Load the first of ``order`` that every rank can read; skip (and report) the others."""
        location = reader.location_of(map_location)
        group = self._group.group
        for entry in order:
            started = time.monotonic()
            data: dict[str, Any] = {}
            problem: tuple[str, str] | None = None
            try:
                full = target is None
                data = reader.read(
                    self.directory, entry, location, weights_only, full=full, group=group
                )
            except reader.RefusedError as exc:
                problem = ("refused", str(exc))
            except Exception as exc:  # noqa: BLE001 - any failure to read means: skip it
                problem = ("corrupt", reader.short_error(exc))
            problems = self._group.all_gather(problem, "load")
            refused = next((p[1] for p in problems if p and p[0] == "refused"), None)
            if refused is not None:
                raise pickle.UnpicklingError(refused)
            failed = [(r, p[1]) for r, p in enumerate(problems) if p]
            if not failed:
                if target is not None:
                    reader.apply(self.directory, entry, data, target, group)
                self._event_loaded(entry, time.monotonic() - started)
                return entry, data
            self._skip(entry, failed)
        if order:
            raise CheckpointError(
                f"none of the {len(order)} checkpoints in {self.directory} could be loaded "
                "(each failure was logged as a 'corrupt' checkpoint event)"
            )
        return None

    def _skip(self, entry: Entry, failed: builtins.list[tuple[int, str]]) -> None:
        self._corrupt.add(entry.file)
        self._entries = [e for e in self._entries if e.file != entry.file]
        if self.rank != 0:
            return
        by_error: dict[str, builtins.list[int]] = {}
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

    # ------------------------------------------------------------------ housekeeping

    def _where(self, name: str) -> str:
        return shown_path(self.directory / name, Path(self.logger.run_dir))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.logger.warning(message, checkpoint="warning")

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"CheckpointManager for {str(self.directory)!r} is closed")

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
