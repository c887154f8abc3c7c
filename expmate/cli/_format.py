"""How the commands write times, durations and numbers, and the console they draw tables on."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

STATUS_STYLES = {
    "running": "cyan",
    "finished": "green",
    "failed": "bold red",
    "interrupted": "yellow",
    "killed": "bold magenta",
    "unknown": "dim",
}


def console(*, stderr: bool = False) -> Any:
    """A rich Console; when the output is not a terminal, wide enough never to wrap a row."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 1000
    # markup off: run ids, messages and config values are shown as they are ("Stage [epoch]").
    return Console(file=stream, width=width, highlight=False, markup=False, soft_wrap=False)


def clock(timestamp: float | None) -> str:
    """``2026-01-23 14:30`` in local time, or ``-``."""
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def clock_seconds(timestamp: float | None) -> str:
    """``2026-01-23 14:30:22`` in local time, or ``-``."""
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def duration(seconds: float | None) -> str:
    """``85µs``, ``4.2ms``, ``0.42s``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``, or ``-``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 0.1:
        return f"{seconds * 1e3:.1f}ms"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def number(value: Any) -> str:
    """A metric value in at most 6 significant digits (``0.4123``, ``1.5e-05``), or ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.6g}"


def at_step(value: Any, step: Any) -> str:
    """``0.4123 @ 5``, or ``-`` without a value."""
    if value is None:
        return "-"
    return f"{number(value)} @ {step}" if step is not None else number(value)


def status_text(status: str) -> Any:
    """The status as rich Text in its color."""
    from rich.text import Text

    return Text(status, style=STATUS_STYLES.get(status, ""))
