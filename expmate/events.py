"""The event record that flows from a logging call to the sinks, and the level table. No I/O."""

from __future__ import annotations

from typing import Any

LEVELS: dict[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}

# Names the logger writes into every JSONL event: keyword fields of a logging call may not use
# them (they would overwrite ours, or ours theirs).
RESERVED_FIELDS = frozenset(
    {"timestamp", "level", "message", "run_id", "rank", "stage", "rate_limited"}
)

# Stage metadata is also inherited by stage and timer events, which add these names of their own.
STAGE_RESERVED_FIELDS = RESERVED_FIELDS | {"stage_event", "elapsed", "status", "error", "timer"}

KIND_MESSAGE = "message"
KIND_STAGE = "stage"
KIND_TIMER = "timer"


def level_name(level: str | int) -> str:
    """Normalise a level given by name (any case) or by number to its canonical name.

    Raises:
        ValueError: the level is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL (or 10..50).
    """
    if isinstance(level, int) and not isinstance(level, bool):
        for name, number in LEVELS.items():
            if number == level:
                return name
        raise ValueError(f"unknown log level {level!r}; expected one of {sorted(LEVELS.values())}")
    if isinstance(level, str):
        name = level.strip().upper()
        name = _ALIASES.get(name, name)
        if name in LEVELS:
            return name
    raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")


def check_field_names(
    fields: dict[str, Any], what: str, reserved: frozenset[str] = RESERVED_FIELDS
) -> None:
    """Reject user-supplied field names that collide with the event's own fields.

    Args:
        fields: the keyword fields or stage metadata.
        what: where they came from, for the message.
        reserved: the names taken (``STAGE_RESERVED_FIELDS`` for stage metadata).

    Raises:
        ValueError: a name is reserved; the message names it and where it came from.
    """
    clash = reserved.intersection(fields)
    if clash:
        names = ", ".join(sorted(clash))
        raise ValueError(
            f"{what} uses reserved event field name(s): {names}; "
            f"reserved names are {', '.join(sorted(reserved))}"
        )


class Event:
    """One logging event: what every sink receives.

    Attributes:
        timestamp: Unix seconds (float).
        level: canonical level name.
        message: the human-readable text.
        kind: ``message``, ``stage`` or ``timer`` (decides the console color).
        stage: full stage path (``epoch/train``) or None outside any stage.
        fields: extra JSON fields (inherited stage metadata, stage_event, elapsed, user fields), or
            None when there are none.
        rate_limited: True when a ``log_every`` block suppressed it from the human transcript.
    """

    __slots__ = ("fields", "kind", "level", "message", "rate_limited", "stage", "timestamp")

    def __init__(
        self,
        timestamp: float,
        level: str,
        message: str,
        kind: str = KIND_MESSAGE,
        stage: str | None = None,
        fields: dict[str, Any] | None = None,
        rate_limited: bool = False,
    ) -> None:
        self.timestamp = timestamp
        self.level = level
        self.message = message
        self.kind = kind
        self.stage = stage
        self.fields = fields
        self.rate_limited = rate_limited

    def __repr__(self) -> str:
        return (
            f"Event(level={self.level!r}, message={self.message!r}, kind={self.kind!r}, "
            f"stage={self.stage!r}, fields={self.fields!r})"
        )
