"""expmate.colors: the color decision (argument, NO_COLOR, FORCE_COLOR, TTY) and the palette."""

from __future__ import annotations

import io

import pytest

from expmate import colors
from expmate.colors import use_color


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


class _ClosedStream:
    def isatty(self) -> bool:
        raise ValueError("I/O operation on closed file")


@pytest.mark.parametrize(
    ("explicit", "environ", "tty", "expected"),
    [
        (None, {}, True, True),
        (None, {}, False, False),
        (None, {"NO_COLOR": "1"}, True, False),
        (None, {"NO_COLOR": ""}, True, True),
        (None, {"FORCE_COLOR": "1"}, False, True),
        (None, {"FORCE_COLOR": "0"}, False, False),
        (None, {"FORCE_COLOR": ""}, False, False),
        (None, {"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),
        (True, {"NO_COLOR": "1"}, False, True),
        (False, {"FORCE_COLOR": "1"}, True, False),
    ],
    ids=[
        "tty",
        "pipe",
        "no-color-wins-over-tty",
        "empty-no-color-ignored",
        "force-color-on-pipe",
        "force-color-0",
        "empty-force-color",
        "no-color-beats-force",
        "explicit-true-beats-all",
        "explicit-false-beats-all",
    ],
)
def test_use_color_precedence(
    explicit: bool | None, environ: dict[str, str], tty: bool, expected: bool
) -> None:
    """explicit argument, then NO_COLOR, then FORCE_COLOR, then the stream's isatty()."""
    assert use_color(_Stream(tty), explicit, environ) is expected


def test_use_color_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without environ, NO_COLOR in os.environ turns colors off for a terminal."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color(_Stream(True)) is False


def test_use_color_without_isatty_or_with_closed_stream_is_off() -> None:
    """A stream with no isatty, a closed stream and None all mean no colors."""
    assert [use_color(s, None, {}) for s in (object(), _ClosedStream(), None)] == [
        False,
        False,
        False,
    ]


def test_palette_is_the_documented_one() -> None:
    """DEBUG cyan, INFO green, WARNING yellow, ERROR red, stages blue, timers cyan."""
    assert (colors.LEVEL_COLORS["DEBUG"], colors.LEVEL_COLORS["INFO"]) == ("\x1b[36m", "\x1b[32m")
    assert (colors.LEVEL_COLORS["WARNING"], colors.LEVEL_COLORS["ERROR"]) == (
        "\x1b[33m",
        "\x1b[31m",
    )
    assert (colors.STAGE_COLOR, colors.TIMER_COLOR, colors.BOLD, colors.RESET) == (
        "\x1b[34m",
        "\x1b[36m",
        "\x1b[1m",
        "\x1b[0m",
    )
