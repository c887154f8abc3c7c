"""expmate.events: level names, reserved field names and the Event record."""

from __future__ import annotations

import pytest

from expmate.events import (
    LEVELS,
    RESERVED_FIELDS,
    STAGE_RESERVED_FIELDS,
    Event,
    check_field_names,
    level_name,
)


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("INFO", "INFO"),
        ("info", "INFO"),
        (" Debug ", "DEBUG"),
        ("warn", "WARNING"),
        ("fatal", "CRITICAL"),
        (10, "DEBUG"),
        (30, "WARNING"),
        (50, "CRITICAL"),
    ],
)
def test_level_name_normalises(given: str | int, name: str) -> None:
    """Names in any case, the WARN/FATAL aliases and the numbers 10..50 map to canonical names."""
    assert level_name(given) == name


@pytest.mark.parametrize("bad", ["LOUD", "", 15, True, None, 20.0])
def test_level_name_refuses_unknown_levels_naming_them(bad: object) -> None:
    """Unknown names and numbers, bools and other types raise ValueError with the value."""
    with pytest.raises(ValueError, match="unknown log level") as caught:
        level_name(bad)  # type: ignore[arg-type]
    assert repr(bad) in str(caught.value)


def test_levels_are_the_logging_numbers() -> None:
    """The level table matches the standard logging module's numbers."""
    assert LEVELS == {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def test_reserved_fields_are_the_event_fields() -> None:
    """Keyword fields may not use the names every event carries."""
    assert sorted(RESERVED_FIELDS) == [
        "level",
        "message",
        "rank",
        "rate_limited",
        "run_id",
        "stage",
        "timestamp",
    ]


def test_stage_reserved_fields_add_the_stage_and_timer_names() -> None:
    """Stage metadata may not use the names stage and timer events add either."""
    assert sorted(STAGE_RESERVED_FIELDS - RESERVED_FIELDS) == [
        "elapsed",
        "error",
        "stage_event",
        "status",
        "timer",
    ]


def test_logging_call_may_name_a_field_error() -> None:
    """``error=`` is a natural keyword field of a logging call and is allowed there."""
    check_field_names({"error": "boom", "status": "failed"}, "logging call")
    with pytest.raises(ValueError, match="error"):
        check_field_names({"error": "boom"}, "stage 'x' metadata", STAGE_RESERVED_FIELDS)


def test_check_field_names_accepts_free_names() -> None:
    """Names that are not reserved pass."""
    check_field_names({"epoch": 1, "lr": 0.1}, "stage 'epoch' metadata")


def test_check_field_names_names_every_clash_and_the_source() -> None:
    """Reserved names are listed, sorted, after where they came from."""
    with pytest.raises(ValueError) as caught:
        check_field_names({"rank": 1, "level": 2, "ok": 3}, "stage 'x' metadata")
    assert str(caught.value).startswith(
        "stage 'x' metadata uses reserved event field name(s): level, rank;"
    )


def test_event_defaults_and_repr() -> None:
    """An Event defaults to a plain message outside any stage, not rate-limited."""
    event = Event(1.5, "INFO", "hi")
    assert (event.kind, event.stage, event.fields, event.rate_limited) == (
        "message",
        None,
        None,
        False,
    )
    assert repr(event) == (
        "Event(level='INFO', message='hi', kind='message', stage=None, fields=None)"
    )
