"""Rank 0's side of a checkpoint manager: writing, the manifest, retention and their events.

Only the writing rank has a :class:`CheckpointWriter`. Its list of checkpoints is the truth on
disk; a background save updates it from its own thread, so every method holds the lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from expmate.durable import fsync_dir, replace_durably
from expmate.sinks import report_failure
from expmate.torch._checkpoint_index import (
    CORRUPT_SUFFIX,
    KIND_FILE,
    KIND_SHARDED,
    STATE_FILE,
    Entry,
    dir_size,
    kept,
    manifest_bytes,
    plain_name,
    remove_path,
    sharded_name,
    write_manifest,
)


def shown_path(path: Path, run_dir: Path) -> str:
    """``path`` relative to ``run_dir`` when inside it (as events record it), else as given."""
    try:
        return str(path.relative_to(run_dir))
    except ValueError:
        return str(path)


def disk_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``, if any: torch.save turns a full disk into a RuntimeError of
    its zip writer ("unexpected pos ..."), with the OSError as its context."""
    seen: BaseException | None = exc
    for _ in range(16):  # a chain is short; the bound guards against a cycle
        if seen is None or isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def human_size(size: int) -> str:
    """``1234567`` -> ``'1.2 MB'`` (SI units)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


class CheckpointWriter:
    """Writes checkpoints, keeps ``checkpoints.json`` current and applies the retention policy.

    Args:
        directory: the checkpoint directory.
        logger: receives the ``checkpoint`` events (saved, deleted, failed).
        entries: the complete checkpoints found at start-up.
        stale: cut writes and superseded revisions found at start-up (removed at the next save).
        policy: ``keep_last``, ``keep_best``, ``monitor`` and ``mode``.
    """

    def __init__(
        self,
        directory: Path,
        logger: Any,
        entries: list[Entry],
        stale: list[str],
        policy: dict[str, Any],
    ) -> None:
        self.directory = directory
        self.logger = logger
        self.entries = list(entries)
        self._stale = list(stale)
        self._policy = policy
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> list[Entry]:
        """The complete checkpoints now, sorted by step."""
        with self._lock:
            return sorted(self.entries, key=lambda e: e.step)

    def where(self, name: str) -> str:
        """A checkpoint's path for messages: relative to the run directory when inside it."""
        return shown_path(self.directory / name, self.logger.run_dir)

    # ------------------------------------------------------------------ before a save

    def clean(self, corrupt: set[str]) -> None:
        """Remove cut writes and superseded revisions; move corrupt checkpoints aside.

        Called at the start of a save, when no write of this manager is in flight. A corrupt
        checkpoint (one that failed to load) is renamed ``<name>.corrupt``, never deleted.
        """
        with self._lock:
            stale, self._stale = self._stale, []
            bad = [e for e in self.entries if e.file in corrupt]
            self.entries = [e for e in self.entries if e.file not in corrupt]
        for name in stale:
            try:
                remove_path(self.directory / name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                report_failure(f"removing {self.directory / name}", exc)
        for entry in bad:
            try:
                os.replace(
                    self.directory / entry.file, self.directory / (entry.file + CORRUPT_SUFFIX)
                )
            except OSError as exc:
                report_failure(f"moving aside {self.directory / entry.file}", exc)
        if bad:
            self._write_manifest()

    # ------------------------------------------------------------------ plain files

    def write_file(
        self, step: int, write: Callable[[BinaryIO], object], value: float | None
    ) -> Entry | None:
        """Write a plain checkpoint durably, then record it; None (reported) when the disk failed.

        Raises:
            Exception: whatever ``write`` raises that no OSError caused (an unpicklable
                ``extra``).
        """
        name = plain_name(step)
        started = time.monotonic()
        try:
            size = replace_durably(self.directory / name, write)
        except Exception as exc:
            cause = disk_error(exc)
            if cause is None:
                raise
            self.failed(step, name, cause)
            return None
        entry = Entry(step, name, KIND_FILE, size, time.time(), time.monotonic() - started, value)
        self.commit(entry)
        return entry

    # ------------------------------------------------------------------ sharded directories

    def start_sharded(self, step: int, state: Callable[[BinaryIO], object]) -> str | None:
        """Create the directory of a sharded checkpoint and write its ``state.pt``; None (reported)
        when the disk failed. The shards and ``.metadata`` follow, written by every rank."""
        with self._lock:
            taken = {e.file for e in self.entries}
        revision = 0
        while (
            sharded_name(step, revision) in taken
            or (self.directory / sharded_name(step, revision)).exists()
        ):
            revision += 1
        name = sharded_name(step, revision)
        try:
            os.mkdir(self.directory / name)
            replace_durably(self.directory / name / STATE_FILE, state)
        except Exception as exc:
            cause = disk_error(exc)
            if cause is None:
                raise
            self.failed(step, name, cause)
            with self._lock:
                self._stale.append(name)
            return None
        return name

    def finish_sharded(
        self, step: int, name: str, seconds: float, value: float | None, error: str | None
    ) -> Entry | None:
        """Record a sharded checkpoint whose shards every rank wrote (``error``: a rank failed)."""
        path = self.directory / name
        if error is None and not (path / ".metadata").is_file():
            error = "torch.distributed.checkpoint wrote no .metadata"
        if error is None:
            try:
                fsync_dir(path)
                fsync_dir(self.directory)
                size = dir_size(path)
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            self.failed(step, name, RuntimeError(error))
            with self._lock:
                self._stale.append(name)
            return None
        entry = Entry(step, name, KIND_SHARDED, size, time.time(), seconds, value)
        self.commit(entry)
        return entry

    # ------------------------------------------------------------------ after a write

    def commit(self, entry: Entry) -> None:
        """Add a complete checkpoint, replace the manifest, then delete what retention drops.

        The manifest no longer lists a checkpoint when its deletion starts, and the newest
        checkpoint is never deleted.
        """
        with self._lock:
            replaced = [e for e in self.entries if e.step == entry.step and e.file != entry.file]
            entries = [e for e in self.entries if e.step != entry.step] + [entry]
            keep = kept(
                entries,
                keep_last=self._policy["keep_last"],
                keep_best=self._policy["keep_best"],
                mode=self._policy["mode"],
            )
            keep.add(entry.file)  # the checkpoint just written, even when an older step
            dropped = [e for e in entries if e.file not in keep] + replaced
            self.entries = sorted((e for e in entries if e.file in keep), key=lambda e: e.step)
        self._write_manifest()
        self._event_saved(entry)
        for old in dropped:
            self._delete(old)

    def _write_manifest(self) -> None:
        with self._lock:
            text = manifest_bytes(
                self.entries,
                monitor=self._policy["monitor"],
                mode=self._policy["mode"],
                keep={k: self._policy[k] for k in ("keep_last", "keep_best")},
            )
        try:
            write_manifest(self.directory, text)
        except OSError as exc:
            report_failure(f"writing {self.directory / 'checkpoints.json'}", exc)

    def _delete(self, entry: Entry) -> None:
        try:
            remove_path(self.directory / entry.file)
        except FileNotFoundError:
            return
        except OSError as exc:
            report_failure(f"deleting checkpoint {self.directory / entry.file}", exc)
            return
        self._log(
            "info",
            f"Checkpoint deleted: step {entry.step} ({self.where(entry.file)})",
            checkpoint="deleted",
            step=entry.step,
            file=self.where(entry.file),
            size=entry.size,
        )

    def _event_saved(self, entry: Entry) -> None:
        monitor = self._policy["monitor"]
        shown = f", {monitor}={entry.value:.6g}" if monitor and entry.value is not None else ""
        self._log(
            "info",
            f"Checkpoint saved: step {entry.step} -> {self.where(entry.file)} "
            f"({human_size(entry.size)} in {entry.seconds or 0.0:.2f}s{shown})",
            checkpoint="saved",
            step=entry.step,
            file=self.where(entry.file),
            size=entry.size,
            seconds=entry.seconds,
            value=entry.value,
        )

    def failed(self, step: int, name: str, exc: BaseException) -> None:
        """Report a save that failed (disk full, ...): one ERROR event, one line on stderr."""
        with self._lock:
            latest = max((e.step for e in self.entries), default=None)
        kept_text = f"the latest is step {latest}" if latest is not None else "there is none yet"
        self._log(
            "error",
            f"Checkpoint save failed at step {step} ({type(exc).__name__}: {exc}); the previous "
            f"checkpoints are intact ({kept_text}) and training continues",
            checkpoint="failed",
            step=step,
            file=self.where(name),
            error=f"{type(exc).__name__}: {exc}",
        )
        report_failure(f"saving checkpoints in {self.directory}", exc)

    def _log(self, level: str, message: str, **fields: Any) -> None:
        # RuntimeError: the logger was closed while a background save finished.
        with contextlib.suppress(RuntimeError):
            getattr(self.logger, level)(message, **fields)
