"""Stage and timer blocks: the context managers behind ``logger.stage()`` and ``logger.timer()``.

The stage stack lives in a ``ContextVar`` per logger, so each thread (and each asyncio task) has its
own path: a data-loader thread opening a stage cannot change the main thread's ``epoch/train``.
"""

from __future__ import annotations

import sys
import time
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expmate.logger import ExperimentLogger

# One frame per open stage: (full path, metadata of this stage and every enclosing one).
StageFrame = tuple[str, dict[str, Any]]
StageStack = tuple[StageFrame, ...]


def format_seconds(seconds: float) -> str:
    """``10.5s`` for long spans, ``0.123s`` for short ones."""
    return f"{seconds:.1f}s" if seconds >= 10 else f"{seconds:.3f}s"


def _metadata_text(metadata: dict[str, Any]) -> str:
    if not metadata:
        return ""
    return " (" + ", ".join(f"{key}={value}" for key, value in metadata.items()) + ")"


class StageBlock:
    """``with logger.stage(name, **metadata) as info:`` logs START, END (and ERROR on an exception).

    ``info`` is a dict with ``name``, ``path`` and, after the block, ``elapsed`` (seconds).
    """

    __slots__ = ("_logger", "_metadata", "_name", "_start", "_token", "_var", "info")

    def __init__(
        self,
        logger: ExperimentLogger,
        var: ContextVar[StageStack],
        name: str,
        metadata: dict[str, Any],
    ) -> None:
        self._logger = logger
        self._var = var
        self._name = name
        self._metadata = metadata
        self._token: Token[StageStack] | None = None
        self._start = 0.0
        self.info: dict[str, Any] = {"name": name, "path": name, "elapsed": None}

    def __enter__(self) -> dict[str, Any]:
        if self._logger.closed:
            self._logger._raise_closed()
        frames = self._var.get()
        if frames:
            parent_path, parent_meta = frames[-1]
            path = f"{parent_path}/{self._name}"
            meta = {**parent_meta, **self._metadata} if self._metadata else parent_meta
        else:
            path, meta = self._name, self._metadata
        self.info["path"] = path
        self._token = self._var.set((*frames, (path, meta)))
        self._logger._stage_event(
            "INFO", f"Stage [{path}]{_metadata_text(self._metadata)} - START", path, meta, "start"
        )
        self._start = time.perf_counter()
        return self.info

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._start
        self.info["elapsed"] = elapsed
        path = self.info["path"]
        frames = self._var.get()
        meta = frames[-1][1] if frames else self._metadata
        logger = self._logger
        if not logger.closed:
            status = "ok"
            if exc_type is not None and issubclass(exc_type, Exception):
                status = "error"
                logger._stage_event(
                    "ERROR",
                    f"Stage [{path}] - ERROR after {format_seconds(elapsed)}: "
                    f"{exc_type.__name__}: {exc}",
                    path,
                    meta,
                    "error",
                    elapsed=elapsed,
                    error=f"{exc_type.__name__}: {exc}",
                )
            elif exc_type is not None:
                status = "interrupted"
            logger._stage_event(
                "INFO",
                f"Stage [{path}] - END ({format_seconds(elapsed)})",
                path,
                meta,
                "end",
                elapsed=elapsed,
                status=status,
            )
        self._restore()

    def _restore(self) -> None:
        token = self._token
        if token is None:
            return
        try:
            self._var.reset(token)
        except ValueError:
            # Exited in another context than entered (a generator resumed elsewhere): drop our frame.
            frames = self._var.get()
            self._var.set(tuple(f for f in frames if f[0] != self.info["path"]))


class TimerBlock:
    """``with logger.timer(name) as result:`` measures wall-clock time into ``result['elapsed']``.

    With ``expmate.timer = False`` it measures nothing, logs nothing and leaves ``elapsed`` at 0.0.
    """

    __slots__ = ("_enabled", "_log", "_logger", "_start", "result")

    def __init__(self, logger: ExperimentLogger, name: str, log_result: bool) -> None:
        self._logger = logger
        self._log = log_result
        self._enabled = False
        self._start = 0.0
        self.result: dict[str, Any] = {"name": name, "elapsed": 0.0}

    def __enter__(self) -> dict[str, Any]:
        self._enabled = bool(getattr(sys.modules["expmate"], "timer", True))
        self._start = time.perf_counter()
        return self.result

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if not self._enabled:
            return
        elapsed = time.perf_counter() - self._start
        self.result["elapsed"] = elapsed
        if self._log and not self._logger.closed:
            self._logger._timer_event(self.result["name"], elapsed, failed=exc_type is not None)
