"""When buffered lines reach the disk: on a time interval, at exit, on SIGTERM, never twice after fork.

One daemon thread serves every open logger: it wakes a few times per flush interval and flushes the
loggers whose interval has passed. At interpreter exit and on SIGTERM every open logger is flushed
(files only: no collective is started from here, since other ranks are not there to join it).
Hooks registered with :func:`at_end` run after the last flush: at exit, and before the process
dies of SIGTERM. Nothing here imports a module once the process ends: an import at exit makes
an interrupted script exit with status 1 instead of 130.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from expmate import run_end
from expmate.sinks.base import report_failure


class Flushable(Protocol):
    flush_interval: float

    def flush_files(
        self,
        now: float | None = None,
        *,
        wait: bool = True,
        end: dict[str, Any] | None = None,
        wait_copies: bool = True,
    ) -> None: ...

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
_previous_sigint: Any = None
_end_hooks: list[Callable[[], None]] = []
_pending: list[int] = []  # signals held until the main thread's flush ends
_pending_lock = threading.RLock()  # re-entrant: the signal handler runs on the main thread
_exiting = False  # the exit-time flush has begun


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
                # Device values: copies started here are written by a later flush (no waiting
                # for a GPU from this thread either).
                logger.flush_files(now, wait_copies=False)


def at_end(hook: Callable[[], None]) -> None:
    """Call ``hook()`` once the process ends, for what records how a run ended (``run.json``,
    the restart history): at interpreter exit after the last flush, and on SIGTERM after the
    flush when the process is about to die of it (the default action; a SIGTERM handler of the
    script that lets training go on, or stop at a step boundary, ends nothing yet).

    A hook must import nothing (see the module's docstring); one that raises is reported once.
    """
    _end_hooks.append(hook)


def flush_all() -> None:
    """Flush the files of every open logger (no collectives), at exit or on SIGTERM.

    Each logger records how the run ended (``summary.json``): the exception that ended the main
    script, the signal noted by the SIGTERM handler, or finished. A process that goes on after a
    SIGTERM it handles itself records ``running`` again at its next flush.
    """
    loggers = _loggers()
    if loggers:
        end = run_end.outcome(at_exit=True)
        for logger in loggers:
            logger.flush_files(wait=False, end=end)


def _ended() -> None:
    for hook in list(_end_hooks):
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - the process is ending: report, never raise
            report_failure("recording the end of the run", exc)


def _at_exit() -> None:
    global _exiting
    _exiting = True
    flush_all()
    _ended()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _exiting:
        return  # the interpreter is already ending: let it finish flushing and recording
    run_end.note_signal(signum)
    if _hold(signum, frame):
        return
    _act_on_sigterm(signum, frame)


def _act_on_sigterm(signum: int, frame: FrameType | None) -> None:
    flush_all()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    # Default action: die of SIGTERM as if we had never been here.
    _ended()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C as usual (the previous handler raises KeyboardInterrupt), but never inside a flush
    of the main thread, where the lines it has taken would be lost: there it waits until the
    flush has ended."""
    if _hold(signum, frame):
        return
    _previous_sigint(signum, frame)


def _act(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGINT:
        _previous_sigint(signum, frame)
    else:
        _act_on_sigterm(signum, frame)


def _flush_frame(frame: FrameType | None) -> FrameType | None:
    """The frame of a logger's ``flush_files`` that ``frame`` runs in, or None.

    Such a flush may hold lines it took from the buffers but has not written yet: a flush from a
    signal handler would not see them, and dying (or raising) now would lose them. A flush starts
    no collective, so it ends soon once the handler has returned.
    """
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if frame.f_code.co_name == "flush_files" and module.startswith("expmate."):
            return frame
        frame = frame.f_back
    return None


def _inside_flush(frame: FrameType | None) -> bool:
    """Whether the interrupted main thread is in a logger's ``flush_files``."""
    return _flush_frame(frame) is not None


def _hold(signum: int, frame: FrameType | None) -> bool:
    """Inside a flush of the main thread: keep ``signum`` until that flush ends (then
    :func:`after_flush` acts on it) and return True; elsewhere return False."""
    flush = _flush_frame(frame)
    if flush is None:
        return False
    with _pending_lock:
        if signum in _pending:
            return True
        _pending.append(signum)
    with contextlib.suppress(RuntimeError):  # the interpreter is shutting down: no new threads
        threading.Thread(
            target=_resend_if_unclaimed, args=(signum, flush), name="expmate-signal", daemon=True
        ).start()
    return True


def after_flush() -> None:
    """Called by a logger's ``flush_files`` as it returns: act now on a signal (SIGTERM, Ctrl-C)
    that arrived during it, in the main thread, with every line of that flush written."""
    if not _pending or threading.current_thread() is not threading.main_thread():
        return
    caller = sys._getframe(1)
    if _inside_flush(caller.f_back):
        return  # an outer flush is still running: it acts when it ends
    with _pending_lock:
        signals = list(_pending)
        _pending.clear()
    for signum in signals:
        _act(signum, caller)


def _resend_if_unclaimed(signum: int, flush: FrameType) -> None:
    """The safety net of :func:`after_flush`: once the held flush has returned, send the signal
    again if nothing has acted on it (a flush that does not call :func:`after_flush`)."""
    main = threading.main_thread().ident or -1

    def running() -> bool:
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame is flush:
                return True
            frame = frame.f_back
        return False

    while running():
        time.sleep(0.005)
    time.sleep(0.5)
    with _pending_lock:
        if signum not in _pending:
            return
        _pending.remove(signum)
    os.kill(os.getpid(), signum)


def _install_sigterm() -> None:
    """Chain a flush in front of the current SIGTERM handler, and the flush guard in front of a
    Python SIGINT handler (main thread only, once)."""
    global _sigterm_installed, _previous_sigterm, _previous_sigint
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
        previous_sigint = signal.getsignal(signal.SIGINT)
        if callable(previous_sigint):  # SIG_IGN / SIG_DFL: nothing raises inside a flush
            _previous_sigint = previous_sigint
            signal.signal(signal.SIGINT, _on_sigint)
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


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
