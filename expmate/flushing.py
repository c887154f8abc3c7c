"""When buffered lines reach the disk: on a time interval, at exit, on SIGTERM, never twice after fork.

One daemon thread serves every open logger: it wakes a few times per flush interval and flushes the
loggers whose interval has passed. At interpreter exit and on SIGTERM every open logger is flushed
(files only: no collective is started from here, since other ranks are not there to join it).
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from expmate import run_end
from expmate.sinks.base import report_failure


class Flushable(Protocol):
    flush_interval: float

    def flush_files(self, now: float | None = None, *, wait: bool = True) -> None: ...

    def due(self, now: float) -> bool: ...

    def after_fork(self) -> None: ...


# Strong references: a logger dropped without close() (a local of main(), say) still has its
# waiting lines written by the flusher and at exit.
_live: set[Any] = set()
_lock = threading.RLock()  # re-entrant: the SIGTERM handler may run while this thread holds it
_wake = threading.Event()
_thread: threading.Thread | None = None
_sigterm_installed = False
_previous_sigterm: Any = None
_resent = False  # the next SIGTERM is the one _flush_and_resend sent after flushing
_end_hooks: list[Callable[[], None]] = []


def register(logger: Flushable) -> None:
    """Start flushing ``logger`` in the background and at exit/SIGTERM."""
    global _thread
    with _lock:
        _live.add(logger)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="expmate-flush", daemon=True)
            _thread.start()
    _install_sigterm()


def unregister(logger: Flushable) -> None:
    """Stop flushing ``logger`` (after it closed)."""
    with _lock:
        _live.discard(logger)


def _loggers() -> list[Any]:
    with _lock:
        return list(_live)


def _run() -> None:
    while True:
        loggers = _loggers()
        tick = min((lg.flush_interval for lg in loggers), default=1.0) / 4
        _wake.wait(min(max(tick, 0.01), 0.25))
        _wake.clear()
        now = time.time()
        for logger in loggers:
            if logger.due(now):
                logger.flush_files(now)


def at_end(hook: Callable[[], None]) -> None:
    """Run ``hook`` after the last flush of every open logger, at exit and on SIGTERM.

    For what records how a run ended (``run.json``); a hook that raises is reported once.
    """
    _end_hooks.append(hook)


def flush_all() -> None:
    """Flush the files of every open logger (no collectives), then run the end hooks; at exit or
    on SIGTERM."""
    for logger in _loggers():
        logger.flush_files(wait=False)
    for hook in list(_end_hooks):
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - the process is ending: report, never raise
            report_failure("recording the end of the run", exc)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _resent
    run_end.note_signal(signum)
    if _resent:
        _resent = False  # the deferred flush below is done: act on the signal now
    elif _inside_flush(frame) and _defer(signum):
        return
    else:
        flush_all()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    # Default action: die of SIGTERM as if we had never been here.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _inside_flush(frame: FrameType | None) -> bool:
    """Whether the interrupted main thread is in a logger's ``flush_files``.

    It may hold lines it took from the buffers but has not written yet: a flush from the handler
    would not see them, and dying now would lose them. A flush starts no collective, so it ends
    soon once the handler has returned.
    """
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if frame.f_code.co_name == "flush_files" and module.startswith("expmate."):
            return True
        frame = frame.f_back
    return False


def _defer(signum: int) -> bool:
    """Let the main thread finish its flush; flush again from a helper thread, then re-send."""
    try:
        threading.Thread(
            target=_flush_and_resend, args=(signum,), name="expmate-sigterm", daemon=True
        ).start()
    except RuntimeError:  # the interpreter is shutting down: no new threads
        return False
    return True


def _flush_and_resend(signum: int) -> None:
    global _resent
    flush_all()
    _resent = True
    os.kill(os.getpid(), signum)


def _install_sigterm() -> None:
    """Chain a flush in front of the current SIGTERM handler (main thread only, once)."""
    global _sigterm_installed, _previous_sigterm
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        return
    _sigterm_installed = True


def _after_fork_in_child() -> None:
    """A forked child (a data-loader worker) owns none of the parent's waiting lines or thread."""
    global _thread, _sigterm_installed
    for logger in list(_live):
        logger.after_fork()
    _thread = None
    _sigterm_installed = True  # the handler copied from the parent is kept as is


atexit.register(flush_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
