"""expmate.sinks.text_log: the clock text and plain exp.log lines."""

from __future__ import annotations

import time
from pathlib import Path

from expmate.events import KIND_STAGE, Event
from expmate.sinks.text_log import TextLogSink, format_clock


def _local(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def test_format_clock_is_local_time_to_the_second() -> None:
    """format_clock gives the local `YYYY-MM-DD HH:MM:SS` of the timestamp, fractions dropped."""
    assert format_clock(1706017822.999) == _local(1706017822)


def test_format_clock_changes_with_the_second() -> None:
    """Alternating seconds each get their own text (the cache does not stick)."""
    texts = [format_clock(t) for t in (1000.1, 1001.2, 1000.3, 1000.9, 5000.0)]
    assert texts == [_local(1000), _local(1001), _local(1000), _local(1000), _local(5000)]


def test_text_log_writes_plain_lines(tmp_path: Path) -> None:
    """Each event becomes `time - LEVEL - message\\n`; stage events are not colored."""
    sink = TextLogSink(tmp_path / "exp.log")
    sink.emit(Event(1706017822.5, "INFO", "Starting experiment: exp1"))
    sink.emit(Event(1706017823.0, "INFO", "Stage [a] - START", KIND_STAGE, "a"))
    sink.close()
    assert (tmp_path / "exp.log").read_text(encoding="utf-8") == (
        f"{_local(1706017822)} - INFO - Starting experiment: exp1\n"
        f"{_local(1706017823)} - INFO - Stage [a] - START\n"
    )


def test_text_log_appends_to_an_existing_file(tmp_path: Path) -> None:
    """A second sink on the same file keeps the first sink's lines."""
    path = tmp_path / "exp.log"
    path.write_text("old line\n", encoding="utf-8")
    sink = TextLogSink(path)
    sink.emit(Event(0.0, "ERROR", "new"))
    sink.close()
    assert path.read_text(encoding="utf-8") == f"old line\n{_local(0)} - ERROR - new\n"


def test_lines_wait_until_flush(tmp_path: Path) -> None:
    """Nothing is written before flush(); flush() writes all waiting lines."""
    path = tmp_path / "exp.log"
    sink = TextLogSink(path)
    sink.emit(Event(0.0, "INFO", "a"))
    assert path.read_text(encoding="utf-8") == ""
    sink.flush()
    assert path.read_text(encoding="utf-8") == f"{_local(0)} - INFO - a\n"
    sink.close()
