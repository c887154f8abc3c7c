"""A user's ``logging.Handler`` standing in for ``exp.log`` (``logger.log_handler = handler``)."""

from __future__ import annotations

import logging

from expmate.events import LEVELS, Event
from expmate.sinks.base import report_failure


class HandlerSink:
    """Hands each event to a ``logging.Handler`` as a ``LogRecord``, so its formatter applies.

    The record's ``created`` time is the event's timestamp; the event's JSON fields (stage path,
    stage metadata, user fields) are set as record attributes for formatters that want them.
    """

    def __init__(self, handler: logging.Handler, *, logger_name: str = "expmate") -> None:
        self.handler = handler
        self._name = logger_name

    def emit(self, event: Event) -> None:
        record = logging.LogRecord(
            self._name, LEVELS[event.level], "", 0, event.message, None, None
        )
        record.created = event.timestamp
        record.msecs = (event.timestamp - int(event.timestamp)) * 1000.0
        record.stage = event.stage
        if event.fields:
            for key, value in event.fields.items():
                if key not in record.__dict__:
                    setattr(record, key, value)
        if record.levelno < self.handler.level:
            return  # the handler's own level applies, as it would under a logging.Logger
        try:
            self.handler.handle(record)
        except Exception as exc:  # noqa: BLE001 - a user's handler must not stop training
            report_failure(f"log handler {self.handler!r}", exc)

    def flush(self) -> None:
        try:
            self.handler.flush()
        except Exception as exc:  # noqa: BLE001
            report_failure(f"log handler {self.handler!r}", exc)

    def close(self) -> None:
        # The handler belongs to the caller, who may still use it: flush, do not close.
        self.flush()
