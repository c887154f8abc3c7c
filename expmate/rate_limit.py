"""``log_every``: which messages reach the human transcript (console and exp.log).

Inside a ``with logger.log_every(...)`` block, messages are kept out of the console and the text
log unless the limiter fires this time; the JSONL file always gets them (marked ``rate_limited``).
"""

from __future__ import annotations

import math
import time
from contextvars import ContextVar
from typing import Any


class RateLimiter:
    """Counts passes through one ``log_every`` site and decides whether this pass is shown.

    It fires on the first pass, then on every ``every``-th pass, or when ``seconds`` have passed
    since it last fired.
    """

    __slots__ = ("count", "every", "last", "seconds")

    def __init__(self, every: int | None, seconds: float | None) -> None:
        self.every = every
        self.seconds = seconds
        self.count = 0
        self.last = -math.inf

    def fire(self) -> bool:
        if self.every is not None:
            fired = self.count % self.every == 0
            self.count += 1
            return fired
        now = time.monotonic()
        if now - self.last >= self.seconds:  # type: ignore[operator]
            self.last = now
            return True
        return False


def check_rate(every: Any, seconds: Any) -> None:
    """Raise ValueError/TypeError unless exactly one of ``every``/``seconds`` is a valid bound."""
    if (every is None) == (seconds is None):
        raise ValueError(
            "log_every needs exactly one of every=N or seconds=S, "
            f"got every={every!r}, seconds={seconds!r}"
        )
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, int):
            raise TypeError(f"log_every(every=...) must be a positive integer, got {every!r}")
        if every < 1:
            raise ValueError(f"log_every(every=...) must be a positive integer, got {every!r}")
    else:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"log_every(seconds=...) must be a positive number, got {seconds!r}")
        if not seconds > 0 or not math.isfinite(seconds):
            raise ValueError(f"log_every(seconds=...) must be a positive number, got {seconds!r}")


class RateLimitBlock:
    """The context manager ``log_every`` returns: marks messages inside it as shown or not."""

    __slots__ = ("_flag", "_limiter", "_token")

    def __init__(self, limiter: RateLimiter, flag: ContextVar[bool]) -> None:
        self._limiter = limiter
        self._flag = flag
        self._token: Any = None

    def __enter__(self) -> bool:
        shown = self._limiter.fire()
        self._token = self._flag.set(not shown)
        return shown

    def __exit__(self, *exc: object) -> None:
        self._flag.reset(self._token)
