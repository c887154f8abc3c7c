"""expmate.sinks.handler and logger.log_handler: a logging.Handler in place of exp.log."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest

from expmate.events import KIND_STAGE, Event
from expmate.sinks import base
from expmate.sinks.handler import HandlerSink
from tests.helpers import lines_of, make_logger, read_events

ASCTIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _Failing(logging.Handler):
    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        raise RuntimeError("handler broke")

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - never reached
        pass

    def __repr__(self) -> str:
        return "<Failing>"


def test_record_carries_level_message_time_and_fields() -> None:
    """The LogRecord has the event's level, message, created time, stage and fields."""
    handler = _Collect()
    HandlerSink(handler).emit(
        Event(1706017822.25, "WARNING", "w", KIND_STAGE, "a/b", {"epoch": 5, "msg": "clash"})
    )
    (record,) = handler.records
    assert (record.levelno, record.levelname, record.getMessage()) == (30, "WARNING", "w")
    assert (record.created, record.msecs, record.name) == (1706017822.25, 250.0, "expmate")
    assert (record.stage, record.epoch) == ("a/b", 5)  # type: ignore[attr-defined]
    assert record.msg == "w"


def test_guide_format_goes_to_the_handler_file(tmp_path: Path) -> None:
    """With `%(asctime)s | %(levelname)s | %(message)s` every message lands in that format."""
    logger, console = make_logger(tmp_path / "run")
    handler = logging.FileHandler(tmp_path / "custom.log")
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(message)s"))
    logger.log_handler = handler
    logger.info("Training started")
    logger.warning("LR might be too high")
    logger.close()
    handler.close()
    lines = lines_of(tmp_path / "custom.log")
    assert [line.split(" | ", 1)[1] for line in lines] == [
        "INFO | Training started",
        "WARNING | LR might be too high",
    ]
    assert all(re.fullmatch(ASCTIME, line.split(" | ")[0]) for line in lines)
    first = read_events(tmp_path / "run" / "events.jsonl")[0]
    assert lines[0].startswith(
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first["timestamp"]))
    )
    assert lines_of(tmp_path / "run" / "exp.log") == []
    assert len(console.getvalue().splitlines()) == 2


def test_lines_before_the_handler_stay_in_exp_log(tmp_path: Path) -> None:
    """Messages logged before the assignment are kept in exp.log."""
    logger, _ = make_logger(tmp_path)
    logger.info("before")
    logger.log_handler = _Collect()
    logger.info("after")
    logger.close()
    assert [line.split(" - ", 2)[2] for line in lines_of(tmp_path / "exp.log")] == ["before"]


def test_handler_none_returns_to_exp_log(tmp_path: Path) -> None:
    """log_handler = None sends later messages to exp.log again."""
    logger, _ = make_logger(tmp_path)
    handler = _Collect()
    logger.log_handler = handler
    assert logger.log_handler is handler
    logger.info("to handler")
    logger.log_handler = None
    logger.info("to file")
    logger.close()
    assert [r.getMessage() for r in handler.records] == ["to handler"]
    assert [line.split(" - ", 2)[2] for line in lines_of(tmp_path / "exp.log")] == ["to file"]


def test_handler_that_is_not_a_handler_is_refused(tmp_path: Path) -> None:
    """Assigning something that is not a logging.Handler raises TypeError naming it."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(TypeError, match=r"'custom\.log'"):
        logger.log_handler = "custom.log"  # type: ignore[assignment]
    logger.close()


def test_failing_handler_is_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A handler that raises never stops logging; stderr gets one line; JSONL keeps everything."""
    monkeypatch.setattr(base, "_reported", set())
    logger, _ = make_logger(tmp_path)
    logger.log_handler = _Failing()
    logger.info("one")
    logger.info("two")
    logger.close()
    err = capfd.readouterr().err
    assert err == (
        "expmate: log handler <Failing> failed (RuntimeError: handler broke); "
        "training continues, further failures of it are not reported\n"
    )
    assert [e["message"] for e in read_events(tmp_path / "events.jsonl")] == ["one", "two"]


def test_close_flushes_but_does_not_close_the_handler(tmp_path: Path) -> None:
    """The handler belongs to the caller: after logger.close() it still works."""
    logger, _ = make_logger(tmp_path / "run")
    handler = logging.FileHandler(tmp_path / "custom.log")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.log_handler = handler
    logger.info("from logger")
    logger.close()
    handler.handle(logging.makeLogRecord({"msg": "after close", "levelno": 20}))
    handler.close()
    assert lines_of(tmp_path / "custom.log") == ["from logger", "after close"]


def test_handler_level_is_respected(tmp_path: Path) -> None:
    """A handler set to WARNING receives warnings and errors, not info."""
    logger, _ = make_logger(tmp_path)
    handler = _Collect()
    handler.setLevel(logging.WARNING)
    logger.log_handler = handler
    logger.info("dropped")
    logger.warning("kept")
    logger.error("kept too")
    logger.close()
    assert [r.getMessage() for r in handler.records] == ["kept", "kept too"]
    assert len(read_events(tmp_path / "events.jsonl")) == 3
