"""How the commands write times, durations and numbers, and the console they draw tables on."""

from __future__ import annotations

import math
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
    width = None if stream.isatty() else 1000  # a pipe or a file: never wrap a row
    # markup off: run ids, messages and config values are shown as they are ("Stage [epoch]").
    return Console(file=stream, width=width, highlight=False, markup=False, soft_wrap=False)


def print_rows(
    out: Any,
    header: list[str],
    rows: list[list[str]],
    *,
    right: frozenset[int] = frozenset(),
    styles: dict[int, dict[str, str]] | None = None,
) -> None:
    """Print a table in the look of rich's ``SIMPLE_HEAD`` box, fast enough for thousands of rows.

    A rich ``Table`` measures and wraps every cell (about a millisecond per row of ten cells);
    a listing of thousands of runs is aligned here instead, and rich still decides the colors
    (none when the output is not a terminal, or under ``NO_COLOR``).

    Args:
        out: the rich Console to print on.
        header: the column titles (bold).
        rows: the cells, as text.
        right: indexes of the columns aligned to the right.
        styles: per column index, the rich style of a cell's text (``{1: {"failed": "red"}}``).
    """
    from rich.cells import cell_len
    from rich.console import COLOR_SYSTEMS
    from rich.style import Style

    system = COLOR_SYSTEMS.get(out.color_system) if out.color_system else None
    cache: dict[str, Style] = {}

    def paint(text: str, style: str) -> str:
        if system is None or not style:
            return text
        if style not in cache:
            cache[style] = Style.parse(style)
        return cache[style].render(text, color_system=system)

    widths = [cell_len(title) for title in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], cell_len(cell))

    def line(cells: list[str], style_of: Any) -> str:
        parts = []
        for i, cell in enumerate(cells):
            gap = " " * (widths[i] - cell_len(cell))
            parts.append(
                paint(cell, style_of(i, cell)) + gap
                if i not in right
                else gap + paint(cell, style_of(i, cell))
            )
        return "   ".join(parts).rstrip()

    table_styles = styles or {}
    lines = [line(header, lambda i, cell: "bold")]
    lines.append("─" * (sum(widths) + 3 * (len(widths) - 1)))
    lines += [line(row, lambda i, cell: table_styles.get(i, {}).get(cell, "")) for row in rows]
    out.file.write("\n".join(lines) + "\n")


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
    """``1.5µs``, ``85µs``, ``4.2ms``, ``0.42s``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``, or ``-``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds == 0:
        return "0s"
    if seconds < 1e-5:
        return f"{seconds * 1e6:.1f}µs"
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
    """A metric value in 4 significant digits (``0.4123``, ``1.5e-05``), or ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def at_step(value: Any, step: Any) -> str:
    """``0.4123 @ 5``, or ``-`` without a value."""
    if value is None:
        return "-"
    return f"{number(value)} @ {step}" if step is not None else number(value)


def status_text(status: str) -> Any:
    """The status as rich Text in its color."""
    from rich.text import Text

    return Text(status, style=STATUS_STYLES.get(status, ""))
