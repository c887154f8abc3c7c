"""How a run ended: finished, failed (exception type and message) or interrupted (which signal).

Read by whatever records the end of a run (``summary.json``, ``run.json``, the restart history)
when a logger closes or the interpreter exits. Nothing here installs an exception hook: at exit,
Python has already stored an exception that ended the main script in ``sys.last_value``, and the
flush-on-signal handler notes SIGTERM (:func:`note_signal`) before the process dies of it.

Example:
    >>> outcome()
    {'status': 'finished'}
    >>> outcome(ValueError("bad lr"))
    {'status': 'failed', 'exception': 'ValueError', 'message': 'bad lr'}
"""

from __future__ import annotations

import signal
import sys
from typing import Any

_MESSAGE_CHARS = 2000  # an exception's message is cut to this many characters

_signal: int | None = None


def note_signal(signum: int) -> None:
    """Remember that ``signum`` (SIGTERM, SIGUSR1, ...) is ending or asked to end this process."""
    global _signal
    _signal = int(signum)


def noted_signal() -> str | None:
    """The name of the signal noted by :func:`note_signal` (``"SIGTERM"``), or None."""
    return None if _signal is None else signal_name(_signal)


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15; ``"signal 99"`` for a number with no name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def outcome(exc: BaseException | None = None, *, at_exit: bool = False) -> dict[str, Any]:
    """How the run ended, as recorded in the run directory's files.

    Args:
        exc: the exception that ended the run (a logger left by an exception in a ``with``
            block), or None.
        at_exit: True when asked at interpreter exit; then an exception that ended the main
            script (``sys.last_value``) counts. Not consulted otherwise: an interactive session
            keeps the last error of an earlier cell there.

    Returns:
        ``{"status": "finished"}``, ``{"status": "failed", "exception": type name, "message":
        text}``, or ``{"status": "interrupted", "signal": "SIGINT"}`` (Ctrl-C, also as a
        KeyboardInterrupt) or the noted signal's name.
    """
    if exc is None and at_exit:
        exc = getattr(sys, "last_value", None)
    if isinstance(exc, KeyboardInterrupt):
        return {"status": "interrupted", "signal": "SIGINT"}
    if exc is not None and not (isinstance(exc, SystemExit) and exc.code in (None, 0)):
        text = str(exc)
        if len(text) > _MESSAGE_CHARS:
            text = text[: _MESSAGE_CHARS - 3] + "..."
        return {"status": "failed", "exception": type(exc).__qualname__, "message": text}
    if _signal is not None:
        return {"status": "interrupted", "signal": signal_name(_signal)}
    return {"status": "finished"}
