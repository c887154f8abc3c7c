"""The human-readable log: ``2025-01-23 14:30:22 - INFO - message``, never colored."""

from __future__ import annotations

import time
from pathlib import Path

from expmate.events import Event
from expmate.sinks.base import AppendFile

# (second, text) in one tuple: loggers in several threads share it, and a single assignment keeps
# a reader from pairing one second with another second's text.
_clock: tuple[int, str] = (-1, "")


def format_clock(timestamp: float) -> str:
    """Local time as ``YYYY-MM-DD HH:MM:SS``, formatted once per second and reused."""
    global _clock
    second = int(timestamp)
    cached = _clock
    if second == cached[0]:
        return cached[1]
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
    _clock = (second, text)
    return text


class TextLogSink:
    """Writes each event as one plain line of ``exp.log`` (or ``exp_rank{r}.log``)."""

    def __init__(self, path: Path) -> None:
        self.file = AppendFile(path)

    def emit(self, event: Event) -> None:
        self.file.buffer.append(
            f"{format_clock(event.timestamp)} - {event.level} - {event.message}\n"
        )

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()
