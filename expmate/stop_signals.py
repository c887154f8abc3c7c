"""SIGTERM and SIGUSR1 (what SLURM and torchrun send before a kill) as a request to stop.

With ``ExperimentLogger(..., stop_signals=True)`` such a signal no longer ends the process: the
handler here notes the signal for the run's end record (:func:`expmate.run_end.note_signal`),
asks the logger for the agreed stop (``request_stop()``: every rank's ``should_stop()`` turns
True at the same step), and flushes that logger's files from a helper thread (never from inside
the handler, which may have interrupted a flush). The training loop then saves a checkpoint at a
safe point and leaves. Nothing here records the end of the run (``run.json``, the end hooks of
:func:`expmate.flushing.flush_all`): the run goes on, and its ``close()`` records how it ended.

How this meets :mod:`expmate.flushing`'s SIGTERM handler (flush, then die of the signal): that
handler is installed when the first logger is built. Enabling stop signals installs this handler
in front of whatever handles the signal then, flushing's included, and keeps the previous one;
this handler never calls it (calling it would end the process). When the last logger that asked
for a signal closes, the previous handler is put back, if this one is still installed. A forked
child (a data-loader worker) gets the previous handlers back at once: it must still die of
SIGTERM. Nothing in :mod:`expmate.flushing` depends on this module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterable
from types import FrameType
from typing import Any, Protocol

from expmate import run_end

_DEFAULT_NAMES = ("SIGTERM", "SIGUSR1")
_UNCATCHABLE = {"SIGKILL", "SIGSTOP"}


class StopTarget(Protocol):
    def request_stop(self) -> None: ...

    def flush_files(self, now: float | None = None, *, wait: bool = True) -> None: ...


_lock = threading.RLock()  # re-entrant: the handler may run while the main thread holds it
_wanted: dict[Any, frozenset[int]] = {}  # target -> the signals that ask it to stop
_previous: dict[int, Any] = {}  # signal -> the handler this module replaced


def signals_of(spec: Any) -> tuple[int, ...]:
    """The signal numbers meant by a ``stop_signals`` argument.

    Args:
        spec: True (SIGTERM and SIGUSR1), False or None (none), or names (``"SIGTERM"``) and
            numbers of the signals to treat as a stop request.

    Raises:
        TypeError, ValueError: anything else, or a signal that cannot be caught, named.
    """
    if spec is None or spec is False:
        return ()
    if spec is True:
        return tuple(int(getattr(signal, n)) for n in _DEFAULT_NAMES if hasattr(signal, n))
    if isinstance(spec, (str, int)) or not isinstance(spec, Iterable):
        raise TypeError(
            f"stop_signals must be True, False or a list of signal names/numbers, not {spec!r}"
        )
    out: list[int] = []
    for item in spec:
        try:
            sig = signal.Signals[item] if isinstance(item, str) else signal.Signals(item)
        except (KeyError, ValueError, TypeError):
            raise ValueError(f"stop_signals: {item!r} is not a signal of this platform") from None
        if sig.name in _UNCATCHABLE:
            raise ValueError(f"stop_signals: {sig.name} cannot be caught")
        if int(sig) not in out:
            out.append(int(sig))
    return tuple(out)


def check_installable(signums: tuple[int, ...]) -> None:
    """Raise now if handlers for ``signums`` cannot be installed (before anything is created).

    Raises:
        RuntimeError: not on the main thread, where Python runs signal handlers.
    """
    if signums and threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "stop_signals need the logger to be created on the main thread: Python installs "
            "and runs signal handlers there only"
        )


def enable(target: StopTarget, signums: tuple[int, ...]) -> None:
    """Make ``signums`` call ``target.request_stop()`` instead of ending the process."""
    if not signums:
        return
    check_installable(signums)
    with _lock:
        _wanted[target] = frozenset(signums)
        for signum in signums:
            if signum not in _previous:
                _previous[signum] = signal.getsignal(signum)
                signal.signal(signum, _on_signal)


def disable(target: StopTarget) -> None:
    """Stop treating signals as a stop request for ``target``; restore the handlers no other
    target needs (from the main thread; elsewhere this handler passes them on instead)."""
    with _lock:
        if _wanted.pop(target, None) is None:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        still = frozenset().union(*_wanted.values())
        for signum in [s for s in _previous if s not in still]:
            previous = _previous.pop(signum)
            if signal.getsignal(signum) is _on_signal:
                signal.signal(signum, previous)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    with _lock:
        targets = [t for t, signums in _wanted.items() if signum in signums]
    if not targets:  # no logger wants it any more (and its handler could not be put back)
        _pass_on(signum, frame)
        return
    run_end.note_signal(signum)
    for target in targets:
        target.request_stop()
    _flush_soon(targets)


def _pass_on(signum: int, frame: FrameType | None) -> None:
    """Do what the replaced handler would have done."""
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _flush_soon(targets: list[Any]) -> None:
    """Flush the targets' files from a helper thread (the handler may have interrupted a flush,
    which the helper then waits for)."""

    def flush() -> None:
        for target in targets:
            target.flush_files()

    try:
        threading.Thread(target=flush, name="expmate-stop-flush", daemon=True).start()
    except RuntimeError:  # the interpreter is shutting down: no new threads
        for target in targets:
            target.flush_files(wait=False)


def _after_fork_in_child() -> None:
    """A forked child is no training rank: give it the handlers that were there before."""
    global _lock
    _lock = threading.RLock()
    _wanted.clear()
    for signum in list(_previous):
        with contextlib.suppress(ValueError, OSError):  # cannot: this handler passes it on
            if signal.getsignal(signum) is _on_signal:
                signal.signal(signum, _previous[signum])
            del _previous[signum]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
