"""The console: one line per event, colored by level, stage and timer when colors are on."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any

from expmate import colors
from expmate.events import KIND_STAGE, KIND_TIMER, Event
from expmate.sinks.base import report_failure
from expmate.sinks.text_log import format_clock


def _stage_text(event: Event) -> str:
    """Blue stage message with the stage path in bold (``Stage [epoch/train] - START``)."""
    path = event.stage or ""
    head = f"Stage [{path}]"
    message = event.message
    if message.startswith(head):
        rest = message[len(head) :]
        return (
            f"{colors.STAGE_COLOR}Stage [{colors.BOLD}{path}{colors.NORMAL_WEIGHT}]{rest}"
            f"{colors.RESET}"
        )
    return f"{colors.STAGE_COLOR}{message}{colors.RESET}"


class ConsoleSink:
    """Prints events to a stream (``sys.stdout`` looked up at each write when none is given).

    Args:
        stream: the stream, or None for the current ``sys.stdout``.
        color: whether to emit ANSI colors (decided once by :func:`expmate.colors.use_color`).
    """

    def __init__(self, stream: IO[str] | None = None, *, color: bool = False) -> None:
        self._stream = stream
        self.color = color
        # Set while a progress bar occupies the stream: writes a line without breaking the bar.
        self.write_hook: Callable[[str], Any] | None = None

    @property
    def stream(self) -> Any:
        """The stream lines go to now."""
        return self._stream if self._stream is not None else sys.stdout

    def format(self, event: Event) -> str:
        """The console line for ``event`` (without the newline)."""
        clock = format_clock(event.timestamp)
        if not self.color:
            return f"{clock} - {event.level} - {event.message}"
        level_color = colors.LEVEL_COLORS.get(event.level, "")
        if event.kind == KIND_STAGE and event.level != "ERROR":
            text = _stage_text(event)
        elif event.kind == KIND_TIMER:
            text = f"{colors.TIMER_COLOR}{event.message}{colors.RESET}"
        else:
            text = f"{level_color}{event.message}{colors.RESET}"
        return f"{clock} - {level_color}{event.level}{colors.RESET} - {text}"

    def emit(self, event: Event) -> None:
        hook = self.write_hook
        try:
            if hook is None:
                stream: Any = self._stream if self._stream is not None else sys.stdout
                stream.write(self.format(event) + "\n")
            else:
                hook(self.format(event) + "\n")
        except (OSError, ValueError) as exc:
            report_failure("console output", exc)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError, AttributeError) as exc:
            report_failure("console output", exc)

    def close(self) -> None:
        self.flush()
