"""expmate.spans: the duration text of stage END messages."""

from __future__ import annotations

import pytest

from expmate.spans import format_seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.000s"),
        (0.1234, "0.123s"),
        (9.9994, "9.999s"),
        (10.0, "10.0s"),
        (10.5, "10.5s"),
        (3725.04, "3725.0s"),
    ],
)
def test_format_seconds(seconds: float, text: str) -> None:
    """Under ten seconds three decimals, from ten seconds on one (the guide's `END (10.5s)`)."""
    assert format_seconds(seconds) == text
