"""expmate.sinks.console: console lines, plain and colored, and a failing stream."""

from __future__ import annotations

import io
import time

import pytest

from expmate.events import KIND_STAGE, KIND_TIMER, Event
from expmate.sinks import base
from expmate.sinks.console import ConsoleSink

TS = 1706017822.25
CLOCK = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(TS))
R, B, N = "\x1b[0m", "\x1b[1m", "\x1b[22m"


def test_plain_line_is_time_level_message() -> None:
    """Without colors a line is `YYYY-MM-DD HH:MM:SS - LEVEL - message`."""
    sink = ConsoleSink(io.StringIO(), color=False)
    assert sink.format(Event(TS, "WARNING", "careful")) == f"{CLOCK} - WARNING - careful"


@pytest.mark.parametrize(
    ("level", "code"),
    [
        ("DEBUG", "\x1b[36m"),
        ("INFO", "\x1b[32m"),
        ("WARNING", "\x1b[33m"),
        ("ERROR", "\x1b[31m"),
        ("CRITICAL", "\x1b[1m\x1b[31m"),
    ],
)
def test_message_is_colored_by_level(level: str, code: str) -> None:
    """Level name and message get the level's color: cyan, green, yellow, red, bold red."""
    sink = ConsoleSink(io.StringIO(), color=True)
    assert sink.format(Event(TS, level, "msg")) == f"{CLOCK} - {code}{level}{R} - {code}msg{R}"


def test_stage_message_is_blue_with_bold_path() -> None:
    """`Stage [epoch/train] - START` is blue with the path in bold."""
    sink = ConsoleSink(io.StringIO(), color=True)
    event = Event(TS, "INFO", "Stage [epoch/train] (k=1) - START", KIND_STAGE, "epoch/train")
    assert sink.format(event) == (
        f"{CLOCK} - \x1b[32mINFO{R} - \x1b[34mStage [{B}epoch/train{N}] (k=1) - START{R}"
    )


def test_stage_error_is_red_like_any_error() -> None:
    """A stage's ERROR event is colored red, not blue."""
    sink = ConsoleSink(io.StringIO(), color=True)
    event = Event(TS, "ERROR", "Stage [s] - ERROR after 0.001s: E: x", KIND_STAGE, "s")
    assert sink.format(event) == (
        f"{CLOCK} - \x1b[31mERROR{R} - \x1b[31mStage [s] - ERROR after 0.001s: E: x{R}"
    )


def test_timer_message_is_cyan() -> None:
    """`Timer [t]: 0.1234s` is cyan whatever its level color."""
    sink = ConsoleSink(io.StringIO(), color=True)
    event = Event(TS, "INFO", "Timer [t]: 0.1234s", KIND_TIMER)
    assert sink.format(event) == f"{CLOCK} - \x1b[32mINFO{R} - \x1b[36mTimer [t]: 0.1234s{R}"


def test_emit_writes_the_line_and_a_newline() -> None:
    """emit() writes one line to the stream."""
    stream = io.StringIO()
    ConsoleSink(stream).emit(Event(TS, "INFO", "hello"))
    assert stream.getvalue() == f"{CLOCK} - INFO - hello\n"


def test_no_stream_means_the_current_sys_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a stream the sink writes to whatever sys.stdout is at the time."""
    ConsoleSink().emit(Event(TS, "INFO", "out"))
    assert capsys.readouterr().out == f"{CLOCK} - INFO - out\n"


def test_closed_stream_is_reported_once(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Writing to a closed stream never raises; stderr gets one line for many failures."""
    monkeypatch.setattr(base, "_reported", set())
    stream = io.StringIO()
    stream.close()
    sink = ConsoleSink(stream)
    for _ in range(3):
        sink.emit(Event(TS, "INFO", "lost"))
    sink.flush()
    err = capfd.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("expmate: console output failed (ValueError: ")
