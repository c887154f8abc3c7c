"""The saving half of a checkpoint manager: ``save()``, the save in flight, the agreed list.

Every method is part of a collective (see :class:`expmate.torch.CheckpointManager`): every rank
sends what it knows to rank 0, rank 0 decides and writes (a plain file) or every rank writes its
shards (a sharded state), and rank 0's outcome, with the list of checkpoints, goes back to every
rank. A save with ``async_save`` is finished, and agreed on, at the manager's next call.
"""

from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from expmate.torch import _checkpoint_reader as reader
from expmate.torch._checkpoint_args import ERRORS, checked_objects, checked_step
from expmate.torch._checkpoint_group import CheckpointGroup
from expmate.torch._checkpoint_index import Entry, plain_name
from expmate.torch._checkpoint_state import (
    capture_rng,
    check_picklable,
    is_sharded,
    part_states,
    payload,
    sharded_states,
    snapshot,
    unwrap,
)
from expmate.torch._checkpoint_verdict import judge
from expmate.torch._checkpoint_writer import CheckpointWriter

# What torch.save raises for a state it cannot serialise (a lambda in extra, ...): PicklingError,
# TypeError, AttributeError, or a RuntimeError of its zip writer with one of them as context.
_UNPICKLABLE = (pickle.PicklingError, TypeError, AttributeError, RuntimeError)
Outcome = dict[str, Any]  # rank 0's answer to every rank: entries, and raise / path / name


class CheckpointSaving:
    """``save()`` and what follows it; the base of :class:`expmate.torch.CheckpointManager`,
    whose constructor sets the attributes declared here."""

    directory: Path
    logger: Any
    monitor: str | None
    mode: str | None
    every_steps: int | None
    async_save: bool
    timeout: float
    closed: bool
    rank: int
    _split: str | None
    _name: str | None
    _group: CheckpointGroup
    _writer: CheckpointWriter | None
    _entries: list[Entry]
    _corrupt: set[str]
    _warned: set[str]
    _thread: threading.Thread | None
    _future: Future[Any] | None
    _sharded_pending: dict[str, Any] | None
    _dcp_async_group: Any

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
        items: list[dict[str, Any]],
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

    # ------------------------------------------------------------------ plain files

    def _save_plain(
        self,
        step: int,
        items: list[dict[str, Any]],
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

    # ------------------------------------------------------------------ sharded directories

    def _save_sharded(
        self,
        step: int,
        items: list[dict[str, Any]] | None,
        model: Any,
        objects: dict[str, Any],
        extra: Any,
    ) -> Path | None:
        """Rank 0 writes ``state.pt``, then every rank its shards, then rank 0 records it."""
        decision = self._start_sharded(step, items, objects, extra)
        decision = self._group.broadcast(decision, "save")
        if decision.get("raise") or decision.get("name") is None:
            return self._conclude(decision)
        path = self.directory / decision["name"]
        pending = {"step": step, "name": decision["name"], "value": decision["value"]}
        pending["started"] = time.monotonic()
        error = self._write_shards(model, objects, path, pending)
        errors = self._group.gather(error, "sharded save")
        outcome = None
        if self._writer is not None and errors is not None:
            outcome = self._record_sharded(pending, errors, path)
        return self._conclude(self._group.broadcast(outcome, "save"))

    def _start_sharded(
        self,
        step: int,
        items: list[dict[str, Any]] | None,
        objects: dict[str, Any],
        extra: Any,
    ) -> Outcome | None:
        """Rank 0: judge the save and write its ``state.pt``; the decision for every rank."""
        if self._writer is None or items is None:
            return None
        small = {k: v for k, v in objects.items() if k in ("scheduler", "scaler")}
        decision, data, value = self._prepare(step, items, small, extra, None)
        if decision is not None:
            return decision
        try:
            name = self._writer.start_sharded(step, lambda f: torch.save(data, f))
        except _UNPICKLABLE as exc:
            return self._rejected_extra(step, exc)
        return {"name": name, "value": value, "cleaned": True, "entries": self._writer.snapshot()}

    def _write_shards(
        self, model: Any, objects: dict[str, Any], path: Path, pending: dict[str, Any]
    ) -> str | None:
        """Every rank: write (or start writing) its shards; its error, if it had one."""
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
            return f"rank {self.rank}: {reader.short_error(exc)}"
        return None

    def _record_sharded(
        self, pending: dict[str, Any], errors: list[str | None], path: Path
    ) -> Outcome:
        """Rank 0: record the shards every rank wrote (or keep a save in flight for later)."""
        assert self._writer is not None
        failure = next((e for e in errors if e), None)
        if self.async_save and failure is None:
            self._sharded_pending, done = pending, True
        else:
            done = self._finish_sharded(pending, failure) is not None
        return {"entries": self._writer.snapshot(), "path": path if done else None}

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

    # ------------------------------------------------------------------ the save in flight

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

    def _settle(self, items: list[dict[str, Any]]) -> None:
        """Rank 0: record the asynchronous sharded save that every rank has now finished."""
        pending, self._sharded_pending = self._sharded_pending, None
        if pending is not None:
            self._finish_sharded(pending, next((i["pending"] for i in items if i["pending"]), None))

    def _sync_point(self, what: str) -> None:
        """Finish the save in flight on every rank and take rank 0's list of checkpoints."""
        items = self._group.gather({"pending": self._finish_local()}, what)
        entries = None
        if self._writer is not None and items is not None:
            self._settle(items)
            entries = self._writer.snapshot()
        self._entries = [
            e for e in self._group.broadcast(entries, what) if e.file not in self._corrupt
        ]

    # ------------------------------------------------------------------ shared checks

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.logger.warning(message, checkpoint="warning")

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"CheckpointManager for {str(self.directory)!r} is closed")
