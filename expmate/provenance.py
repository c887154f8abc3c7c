"""``run.json``: what produced a run (command, versions, hosts, git) and how it ended.

Global rank 0 writes the file when its logger starts, and again, with the end time and status, when
the logger closes, or at interpreter exit (or on SIGTERM) for a logger never closed. Every write
replaces the whole file atomically. Under a process group every rank puts its host, pid and GPU
into the group's key-value store when its logger is created, and rank 0 reads them from there in
the background: no collective, so a logger created on some ranks only never blocks. The git
capture, which can take a while in a large repository, runs on the same background thread:
creating the logger never waits for it.

Reopening a run directory keeps what was there: the earlier ``run.json`` moves into the new one's
``previous`` list, and an earlier ``git.diff`` is renamed ``git.<i>.diff`` (``i`` its place in
that list) before a new one is written.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from expmate import flushing, git_state, run_end
from expmate.cuda_devices import current_device_info
from expmate.sinks.base import replace_file, report_failure

FORMAT = 1
RUN_FILE = "run.json"
DIFF_FILE = "git.diff"

_GIT_WAIT = git_state.TIME_LIMIT + 5.0  # the longest a close waits for the git capture
_SIGNAL_WAIT = 1.0  # ... and the end of a process killed by a signal
_END_KEYS = ("status", "exception", "message", "signal")

# torchrun's variables recorded under "torchrun", by the key they get there.
_TORCHRUN_NUMBERS = {
    "restart_count": "TORCHELASTIC_RESTART_COUNT",
    "max_restarts": "TORCHELASTIC_MAX_RESTARTS",
    "group_rank": "GROUP_RANK",
    "group_world_size": "GROUP_WORLD_SIZE",
    "local_world_size": "LOCAL_WORLD_SIZE",
    "master_port": "MASTER_PORT",
}
_TORCHRUN_TEXTS = {
    "run_id": "TORCHELASTIC_RUN_ID",
    "role_name": "ROLE_NAME",
    "master_addr": "MASTER_ADDR",
}


def torchrun_environment(environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """What torchrun told this process (restart count, run id, ...), or None outside torchrun.

    Example:
        >>> torchrun_environment({"TORCHELASTIC_RUN_ID": "exp1", "TORCHELASTIC_RESTART_COUNT": "2"})
        {'restart_count': 2, 'max_restarts': None, 'group_rank': None, 'group_world_size': None, \
'local_world_size': None, 'master_port': None, 'run_id': 'exp1', 'role_name': None, \
'master_addr': None}
    """
    env = os.environ if environ is None else environ
    if "TORCHELASTIC_RUN_ID" not in env:
        return None
    found: dict[str, Any] = {}
    for key, name in _TORCHRUN_NUMBERS.items():
        raw = env.get(name, "")
        found[key] = int(raw) if raw.strip().isdigit() else None
    for key, name in _TORCHRUN_TEXTS.items():
        found[key] = env.get(name)
    return found


@functools.lru_cache(maxsize=8)
def installed_version(package: str) -> str | None:
    """The version of an installed distribution read from its metadata (no import), or None.

    Looked up once per process (a lookup scans every entry of ``sys.path``).
    """
    import importlib.metadata  # slow to import: only when a version must be looked up

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(installed_torch: str | None = None) -> dict[str, Any]:
    """Python, torch, CUDA (torch's) and expmate versions.

    torch's version comes from the imported module when the script imported torch (then ``cuda``
    is ``torch.version.cuda``, None for a CPU build); otherwise it is ``installed_torch`` (read
    from the package metadata) and ``cuda`` is None: torch is never imported for this.
    """
    torch = sys.modules.get("torch")
    loaded = torch is not None and hasattr(torch, "__version__") and hasattr(torch, "version")
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__) if loaded else installed_torch,  # type: ignore[union-attr]
        "cuda": getattr(torch.version, "cuda", None) if loaded else None,  # type: ignore[union-attr]
        "expmate": str(getattr(sys.modules["expmate"], "__version__", "unknown")),
        "torch_imported": loaded,
    }


def rank_entry(rank: int) -> dict[str, Any]:
    """This process's line of ``ranks``: rank, local rank, host name, pid and GPU."""
    raw = os.environ.get("LOCAL_RANK", "")
    return {
        "rank": rank,
        "local_rank": int(raw) if raw.isdigit() else 0,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "gpu": current_device_info(),
    }


_RANKS_KEY = "expmate/ranks"
_RANKS_WAIT = 30.0  # the longest rank 0 waits for the other ranks' entries, in the background
_RANKS_POLL = 0.05


def group_store() -> Any | None:
    """The key-value store of the default process group when one of several ranks exists."""
    dist: Any = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    if dist.get_world_size() == 1:
        return None
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except (ImportError, RuntimeError, ValueError) as exc:
        report_failure("reaching the process group's store for run.json", exc)
        return None


def _rank_key(run_id: str, rank: int) -> str:
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return f"{_RANKS_KEY}/{attempt}/{run_id}/{rank}"


def publish_rank(store: Any, entry: dict[str, Any], *, run_id: str) -> None:
    """Put this rank's :func:`rank_entry` into the group's store: one set, no collective."""
    try:
        store.set(_rank_key(run_id, entry["rank"]), json.dumps(entry))
    except (RuntimeError, OSError) as exc:
        report_failure("publishing this rank's host for run.json", exc)


def collect_ranks(
    store: Any, entry: dict[str, Any], *, run_id: str, world_size: int, stop: threading.Event
) -> list[dict[str, Any]]:
    """Every rank's entry, in rank order, as the ranks publish them (rank 0's own is ``entry``).

    Polls the store until every rank has published, :data:`_RANKS_WAIT` seconds pass, or
    ``stop`` is set (the logger closes); a rank that never published (one that creates no logger)
    is ``{"rank": r, "missing": true}``.
    """
    found: dict[int, dict[str, Any]] = {0: entry}
    deadline = time.monotonic() + _RANKS_WAIT
    while True:
        for rank in range(1, world_size):
            key = _rank_key(run_id, rank)
            try:
                if rank not in found and store.check([key]):
                    found[rank] = json.loads(bytes(store.get(key)).decode("utf-8"))
            except (RuntimeError, OSError, ValueError) as exc:
                report_failure("reading the other ranks' hosts for run.json", exc)
                return _ordered(found, world_size)
        if len(found) == world_size or time.monotonic() > deadline or stop.is_set():
            return _ordered(found, world_size)
        stop.wait(_RANKS_POLL)


def _ordered(found: dict[int, dict[str, Any]], world_size: int) -> list[dict[str, Any]]:
    return [found.get(rank, {"rank": rank, "missing": True}) for rank in range(world_size)]


class RunRecord:
    """Global rank 0's ``run.json``: written at start (from a background thread) and at the end.

    Args:
        run_dir: the run directory.
        data: the record known at start (command, ranks, ...), in file order.
        capture_git: record the git state of ``data["cwd"]``; False records ``"disabled"``.
    """

    def __init__(
        self, run_dir: Path, data: dict[str, Any], *, capture_git: bool, store: Any = None
    ) -> None:
        self.path = run_dir / RUN_FILE
        self._store = store
        self._closing = threading.Event()
        self._run_dir = run_dir
        self._data = data
        self._capture_git = capture_git
        # Looked up here, not on the background thread: an import there could land after a Ctrl-C
        # has ended the script, and the process would then exit with status 1 instead of 130.
        self._installed_torch = installed_version("torch") if "torch" not in sys.modules else None
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._data["previous"] = self._previous()  # here, before anything can replace run.json
        with _open_lock:
            _open.add(self)
        self._thread = threading.Thread(target=self._start, name="expmate-run-json", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        """Collect what takes time (the other ranks' hosts, git, torch's installed version) and
        write the first record."""
        if self._store is not None:
            ranks = collect_ranks(
                self._store,
                self._data["ranks"][0],
                run_id=self._data["run_id"],
                world_size=self._data["world_size"],
                stop=self._closing,
            )
            with self._lock:
                self._data["ranks"] = ranks
        git, diff = self._git()
        with self._lock:
            if diff is not None:
                git["diff"] = self._write_diff(diff)
            elif git["state"] == "repository":
                git["diff"] = None
            self._data["git"] = git
            self._data["versions"] = versions(self._installed_torch)
            self._write()

    def _git(self) -> tuple[dict[str, Any], bytes | None]:
        if not self._capture_git:
            return {"state": "disabled"}, None
        cwd = self._data["cwd"]
        if cwd is None:
            return {"state": "error", "error": "the working directory no longer exists"}, None
        record, diff = git_state.capture(cwd)
        if record["state"] == "error":
            error = RuntimeError(record["error"])
            report_failure(f"reading the git state of {cwd} for run.json", error)
        return record, diff

    def _write_diff(self, diff: bytes) -> str | None:
        try:
            replace_file(self._run_dir / DIFF_FILE, diff)
        except OSError as exc:
            report_failure(f"writing {self._run_dir / DIFF_FILE}", exc)
            return None
        return DIFF_FILE

    def _previous(self) -> list[Any]:
        """The records of earlier starts in this run directory; their git.diff renamed aside."""
        try:
            old = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            aside = self.path.with_name(f"{RUN_FILE}.unreadable")
            report_failure(f"reading the earlier {self.path} (kept as {aside.name})", exc)
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            return []
        if not isinstance(old, dict):
            return []
        earlier = old.pop("previous", [])
        earlier = earlier if isinstance(earlier, list) else []
        git = old.get("git")
        diff = self._run_dir / DIFF_FILE
        if isinstance(git, dict) and git.get("diff") == DIFF_FILE and diff.exists():
            kept = f"git.{len(earlier)}.diff"
            try:
                os.replace(diff, self._run_dir / kept)
                git["diff"] = kept
            except OSError as exc:
                report_failure(f"renaming the earlier {diff}", exc)
        return [*earlier, old]

    def finish(self, outcome: dict[str, Any], *, wait: float = _GIT_WAIT) -> None:
        """Record the end time and ``outcome`` (from :func:`expmate.run_end.outcome`); once.

        Waits up to ``wait`` seconds for the start record to be complete; if git is still running
        then, its result is added when it arrives. A forked child never finishes its parent's run.
        """
        if os.getpid() != self._pid:
            return
        with _open_lock:
            if self not in _open:
                return
            _open.discard(self)
        self._closing.set()  # the ranks that published by now are all there will be
        self._thread.join(wait)
        with self._lock:
            data = {key: value for key, value in self._data.items() if key not in _END_KEYS}
            ordered: dict[str, Any] = {}
            for key, value in data.items():
                ordered[key] = value
                if key == "end_time":
                    ordered.update({"end_time": time.time(), **outcome})
            ordered["versions"] = versions(self._installed_torch)
            self._data = ordered
            self._write()

    def _write(self) -> None:
        try:
            replace_file(self.path, json.dumps(self._data, indent=2) + "\n")
        except OSError as exc:
            report_failure(f"writing {self.path}", exc)


_open: set[RunRecord] = set()
_open_lock = threading.RLock()  # re-entrant: the SIGTERM handler may run while this thread holds it


def _finish_open_records() -> None:
    """At interpreter exit or on SIGTERM: finish every record whose logger was never closed."""
    with _open_lock:
        records = list(_open)
    signalled = run_end.noted_signal() is not None
    for record in records:
        record.finish(run_end.outcome(at_exit=True), wait=_SIGNAL_WAIT if signalled else _GIT_WAIT)


def _forget_in_child() -> None:
    """A forked child (a data-loader worker) never finishes its parent's records."""
    global _open_lock
    _open_lock = threading.RLock()  # another thread may have held it at the fork
    _open.clear()


flushing.at_end(_finish_open_records)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _working_directory() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # deleted from under the process
        return None


def start(
    run_dir: Path, *, run_id: str, rank: int, world_size: int, capture_git: bool
) -> RunRecord | None:
    """Publish this rank's host in the process group's store and, on rank 0, start ``run.json``.

    No collective: rank 0 reads the other ranks' entries in the background as they arrive, so a
    logger created on some ranks only (``if rank == 0:``) never waits for the others.

    Returns:
        The record on global rank 0, None on the other ranks.
    """
    entry = rank_entry(rank)
    store = group_store()
    if store is not None:
        publish_rank(store, entry, run_id=run_id)
    if rank != 0:
        return None
    data: dict[str, Any] = {
        "format": FORMAT,
        "run_id": run_id,
        "run_dir": str(run_dir.resolve()),
        "command": list(sys.argv),
        "orig_argv": list(getattr(sys, "orig_argv", sys.argv)),
        "executable": sys.executable,
        "cwd": _working_directory(),
        "start_time": time.time(),
        "end_time": None,
        "status": "running",
        "versions": versions(),
        "world_size": world_size,
        "ranks": [entry],
        "torchrun": torchrun_environment(),
        "git": {"state": "pending"},
        "previous": [],
    }
    return RunRecord(run_dir, data, capture_git=capture_git, store=store)
