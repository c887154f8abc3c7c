"""The message methods of :class:`~expmate.ExperimentLogger`: levels, stages, timers, rate limits.

Each builds an :class:`~expmate.events.Event` (with the stage path and the metadata of the
enclosing stages) and hands it to the logger's ``_dispatch``, which writes it to this rank's sinks.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from expmate.events import (
    KIND_MESSAGE,
    KIND_STAGE,
    KIND_TIMER,
    LEVELS,
    STAGE_RESERVED_FIELDS,
    Event,
    check_field_names,
    level_name,
)
from expmate.rate_limit import RateLimitBlock, RateLimiter, check_rate
from expmate.spans import StageBlock, StageStack, TimerBlock

if TYPE_CHECKING:
    from expmate.logger import ExperimentLogger

T = TypeVar("T")


class MessageMethods:
    """``info`` and the other levels, ``log``, ``stage``, ``timer``, ``log_every``, ``progress``."""

    closed: bool
    _levelno: int
    _stages: ContextVar[StageStack]
    _quiet: ContextVar[bool]
    _limiters: dict[Any, RateLimiter]
    _dispatch: Callable[[Event], None]
    _raise_closed: Callable[[], NoReturn]

    def debug(self, message: Any, **fields: Any) -> None:
        """Log at DEBUG (cyan on the console); keyword fields go into the JSONL event."""
        self._log_at(10, "DEBUG", message, fields)

    def info(self, message: Any, **fields: Any) -> None:
        """Log at INFO (green on the console); keyword fields go into the JSONL event."""
        self._log_at(20, "INFO", message, fields)

    def warning(self, message: Any, **fields: Any) -> None:
        """Log at WARNING (yellow on the console)."""
        self._log_at(30, "WARNING", message, fields)

    def error(self, message: Any, **fields: Any) -> None:
        """Log at ERROR (red on the console)."""
        self._log_at(40, "ERROR", message, fields)

    def critical(self, message: Any, **fields: Any) -> None:
        """Log at CRITICAL."""
        self._log_at(50, "CRITICAL", message, fields)

    def log(self, message: Any, level: str | int = "INFO", **fields: Any) -> None:
        """Log at ``level`` given by name (any case) or number.

        Raises:
            ValueError: an unknown level, named in the message.
        """
        name = level_name(level)
        self._log_at(LEVELS[name], name, message, fields)

    def _log_at(self, levelno: int, level: str, message: Any, fields: dict[str, Any]) -> None:
        """Build and dispatch a message event if ``levelno`` passes the logger's level.

        Raises:
            RuntimeError: the logger is closed (whatever the level).
            ValueError: a keyword field uses a reserved name.
        """
        if self.closed:
            self._raise_closed()
        if levelno < self._levelno:
            return
        if type(message) is not str:
            message = str(message)
        frames = self._stages.get()
        if fields:
            check_field_names(fields, "logging call")
            if frames:
                fields = {**frames[-1][1], **fields}
            stage = frames[-1][0] if frames else None
        elif frames:
            stage, fields = frames[-1]
        else:
            stage = None
        quiet = self._quiet.get()
        self._dispatch(
            Event(time.time(), level, message, KIND_MESSAGE, stage, fields or None, quiet)
        )

    def _stage_event(
        self, level: str, message: str, path: str, meta: dict[str, Any], what: str, **extra: Any
    ) -> None:
        if LEVELS[level] < self._levelno:
            return
        fields = {**meta, "stage_event": what, **extra}
        self._dispatch(
            Event(time.time(), level, message, KIND_STAGE, path, fields, self._quiet.get())
        )

    def _timer_event(self, name: str, elapsed: float, *, failed: bool) -> None:
        if self._levelno > 20:
            return
        frames = self._stages.get()
        stage, meta = frames[-1] if frames else (None, {})
        fields = {**meta, "timer": name, "elapsed": elapsed}
        if failed:
            fields["status"] = "error"
        message = f"Timer [{name}]: {elapsed:.4f}s"
        self._dispatch(
            Event(time.time(), "INFO", message, KIND_TIMER, stage, fields, self._quiet.get())
        )

    # ------------------------------------------------------------------ stages, timers, rate limits

    def stage(self, name: str, **metadata: Any) -> StageBlock:
        """A block logged as ``Stage [outer/name] (k=v) - START`` ... ``- END (1.2s)``.

        Every event inside carries ``stage`` (the full path) and the metadata of every enclosing
        stage. An exception inside logs an ERROR event, then END, and propagates.

        Raises:
            ValueError: an empty name, or metadata named like an event field (``level``, ...).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"stage name must be a non-empty string, not {name!r}")
        check_field_names(metadata, f"stage {name!r} metadata", STAGE_RESERVED_FIELDS)
        return StageBlock(cast("ExperimentLogger", self), self._stages, name, metadata)

    def timer(self, name: str, log_result: bool = True) -> TimerBlock:
        """A block timed by the wall clock: ``Timer [name]: 0.1234s``; yields ``{'elapsed': s}``.

        Asynchronous GPU work is not waited for: synchronize first if it must be included.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"timer name must be a non-empty string, not {name!r}")
        return TimerBlock(cast("ExperimentLogger", self), name, log_result)

    def profile(self, name: str, log_result: bool = True) -> TimerBlock:
        """Deprecated alias of :meth:`timer`."""
        warnings.warn(
            "ExperimentLogger.profile() is deprecated; use timer() (or torch.profiler for "
            "detailed profiling)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.timer(name, log_result)

    def log_every(
        self, every: int | None = None, seconds: float | None = None, key: Any = None
    ) -> RateLimitBlock:
        """Show the messages of this block on the console and in exp.log only every ``every``
        passes or ``seconds`` seconds; JSONL gets them all.

        Without ``key`` each call site (file and line) has its own limiter.

        Raises:
            ValueError, TypeError: not exactly one positive ``every``/``seconds``.
        """
        check_rate(every, seconds)
        if key is None:
            caller = sys._getframe(1)
            key = (caller.f_code.co_filename, caller.f_lineno)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = RateLimiter(every, seconds)
        return RateLimitBlock(limiter, self._quiet)

    # ------------------------------------------------------------------ progress

    def progress(
        self,
        iterable: Iterable[T],
        total: int | None = None,
        desc: str | None = None,
        postfix: str | Sequence[str] | None = None,
        *,
        seconds: float = 30.0,
    ) -> Iterable[T]:
        """Iterate over ``iterable`` with a progress bar, once per job.

        On global rank 0 with the console on a terminal and tqdm installed: a tqdm bar (steps/s,
        ETA, and the latest value of each ``postfix`` metric), kept out of the files. On rank 0
        otherwise: an INFO line at most every ``seconds`` seconds and one at the end. On other
        ranks: ``iterable`` itself.

        Args:
            iterable: what to iterate over.
            total: the number of items; None uses ``len(iterable)`` when it has one.
            desc: a label shown before the bar.
            postfix: metrics to show, as ``"split/name"`` (``["train/loss"]``).
            seconds: the interval of the line-by-line form.

        Raises:
            TypeError, ValueError: a bad ``total``, ``desc``, ``postfix`` entry or ``seconds``.

        Example:
            >>> for batch in logger.progress(loader, desc="epoch 0", postfix=["train/loss"]):
            ...     ...  # doctest: +SKIP
        """
        from expmate.progress import progress

        return progress(
            cast("ExperimentLogger", self),
            iterable,
            total=total,
            desc=desc,
            postfix=postfix,
            seconds=seconds,
        )
