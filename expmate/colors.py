"""The one place that decides whether the console gets ANSI colors, and the palette."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Any

RESET = "\x1b[0m"
BOLD = "\x1b[1m"
NORMAL_WEIGHT = "\x1b[22m"
BLUE = "\x1b[34m"
CYAN = "\x1b[36m"
GREEN = "\x1b[32m"
YELLOW = "\x1b[33m"
RED = "\x1b[31m"

LEVEL_COLORS = {
    "DEBUG": CYAN,
    "INFO": GREEN,
    "WARNING": YELLOW,
    "ERROR": RED,
    "CRITICAL": BOLD + RED,
}
STAGE_COLOR = BLUE
TIMER_COLOR = CYAN


def use_color(
    stream: IO[Any] | None, explicit: bool | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Decide whether to color output written to ``stream``.

    Precedence: the explicit argument; ``NO_COLOR`` set and non-empty (off); ``FORCE_COLOR`` set,
    non-empty and not ``0`` (on); otherwise whether the stream is a terminal.

    Args:
        stream: where the console lines go.
        explicit: True/False to force; None to decide from the environment and the stream.
        environ: the environment (``os.environ`` when None), injectable for tests.
    """
    if explicit is not None:
        return bool(explicit)
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    force = env.get("FORCE_COLOR")
    if force and force != "0":
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False
