"""Buffered writes: no file open per call, best.json replaced only at flushes, bounded memory,
one write of whole lines per file and flush, and the background flusher's interval."""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from expmate import ExperimentLogger, flushing, run_end
from expmate.logger import _MAX_WAITING
from expmate.sinks import AppendFile, text_log
from tests.helpers import wait_until


@pytest.fixture
def logger(tmp_path: Path) -> Iterator[ExperimentLogger]:
    """A logger whose interval never passes during a test: only the test's calls flush it."""
    lg = ExperimentLogger(tmp_path, console_output=False, flush_interval=1000)
    yield lg
    lg.close()


def _counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, calls: list[Any]) -> None:
    """Replace ``owner.name`` by a wrapper that records the calls made on this thread."""
    original = getattr(owner, name)
    here = threading.get_ident()

    def counted(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == here:
            calls.append(args[:1])
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)


def _log_steps(logger: ExperimentLogger, steps: range) -> None:
    for step in steps:
        logger.log_metric(step=step, split="val", name="loss", value=1.0 / (step + 1))
        logger.info(f"step {step}")


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0


def test_no_file_open_per_call(logger: ExperimentLogger, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 log_metric + info calls on an open logger open no file (metrics.csv opens at row 1)."""
    _log_steps(logger, range(1))
    opened: list[Any] = []
    for owner, name in ((builtins, "open"), (io, "open"), (os, "open")):
        _counting(monkeypatch, owner, name, opened)
    _log_steps(logger, range(1, 1001))
    assert opened == []
    monkeypatch.undo()
    logger.flush()
    assert _line_count(logger.run_dir / "exp.log") == 1001


def test_best_json_is_replaced_at_flush_not_per_improvement(
    logger: ExperimentLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 improvements replace best.json zero times; flush() replaces it once (and
    summary.json, its heartbeat, once per flush)."""
    calls: list[Any] = []
    _counting(monkeypatch, os, "replace", calls)

    def replaced_files() -> list[str]:
        return [Path(str(args[0])).name.split(".")[1] for args in calls]

    for step in range(1000):
        logger.log_metric(step=step, split="val", name="loss", value=1.0 / (step + 1))
    assert calls == []
    assert not (logger.run_dir / "best.json").exists()
    logger.flush()
    assert replaced_files() == ["best", "summary"]
    best = json.loads((logger.run_dir / "best.json").read_text(encoding="utf-8"))
    assert best == {"val_loss": {"value": 1 / 1000, "step": 999, "mode": "min"}}
    logger.log_metric(step=1000, split="val", name="loss", value=1.0)  # no improvement
    logger.flush()
    assert replaced_files() == ["best", "summary", "summary"]


@pytest.mark.parametrize("kind", ["info", "log_metric"])
def test_waiting_lines_are_bounded(logger: ExperimentLogger, kind: str) -> None:
    """With an interval that never passes, at most _MAX_WAITING lines wait in memory."""
    calls = 10_000
    if kind == "info":
        path = logger.run_dir / "exp.log"
        for i in range(calls):
            logger.info(f"message {i}")
        on_disk = _line_count(path)
    else:
        path = logger.run_dir / "metrics.csv"
        for i in range(calls):
            logger.log_metric(step=i, split="train", name="lr", value=0.1)
        on_disk = _line_count(path) - 1  # the header
    assert on_disk >= calls - _MAX_WAITING
    logger.flush()
    assert _line_count(path) - (kind == "log_metric") == calls


def test_a_flush_is_one_write_of_whole_lines_per_file(
    logger: ExperimentLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file gets its waiting lines in one os.write, so a kill cannot split them there."""
    _log_steps(logger, range(1000))
    writes: list[tuple[str, bytes]] = []
    original = os.write

    def recorded(fd: int, data: Any) -> int:
        writes.append((Path(os.readlink(f"/proc/self/fd/{fd}")).name, bytes(data)))
        return original(fd, data)

    monkeypatch.setattr(os, "write", recorded)
    logger.flush_files()
    monkeypatch.undo()
    appended = [(name, data) for name, data in writes if not name.startswith(".")]  # temp files
    assert sorted(name for name, _ in appended) == ["events.jsonl", "exp.log", "metrics.csv"]
    for _, data in appended:
        assert data.endswith(b"\n")
    assert sorted(data.count(b"\n") for _, data in appended) == [1000, 1000, 1001]


def test_background_flusher_writes_after_the_interval(tmp_path: Path) -> None:
    """Lines and best.json reach the disk without any flush call once the interval has passed."""
    logger = ExperimentLogger(tmp_path, console_output=False, flush_interval=0.05)
    try:
        _log_steps(logger, range(3))
        assert wait_until(lambda: _line_count(tmp_path / "exp.log") == 3, timeout=5)
        assert wait_until(lambda: _line_count(tmp_path / "metrics.csv") == 4, timeout=5)
        assert wait_until(lambda: (tmp_path / "best.json").exists(), timeout=5)
    finally:
        logger.close()


def test_best_json_is_never_ahead_of_metrics_csv(
    logger: ExperimentLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step logged while a flush is writing is not in best.json until its row is on disk."""
    logger.log_metric(step=0, split="val", name="loss", value=1.0)
    original = AppendFile.write

    def write_while_training_goes_on(self: AppendFile, lines: list[str]) -> bool:
        written = original(self, lines)
        if self.path.name == "metrics.csv":
            # The training thread logs its next step while the flusher is still writing.
            logger.log_metric(step=1, split="val", name="loss", value=0.5)
        return written

    monkeypatch.setattr(AppendFile, "write", write_while_training_goes_on)
    logger.flush_files()
    monkeypatch.undo()
    rows = (logger.run_dir / "metrics.csv").read_text(encoding="utf-8").splitlines()
    best = json.loads((logger.run_dir / "best.json").read_text(encoding="utf-8"))
    assert best["val_loss"]["step"] <= int(rows[-1].split(",")[0])


def test_ctrl_c_during_a_flush_is_raised_once_it_has_ended(
    logger: ExperimentLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C that lands inside a flush of the main thread is held until that flush has written
    everything it took, then raised as KeyboardInterrupt from the call, as usual."""
    monkeypatch.setattr(flushing, "_previous_sigint", signal.default_int_handler)
    previous = signal.signal(signal.SIGINT, flushing._on_sigint)
    original = AppendFile.write

    def interrupted_write(self: AppendFile, lines: list[str]) -> bool:
        AppendFile.write = original  # type: ignore[method-assign]
        os.kill(os.getpid(), signal.SIGINT)
        return original(self, lines)

    _log_steps(logger, range(3))
    monkeypatch.setattr(AppendFile, "write", interrupted_write)
    try:
        with pytest.raises(KeyboardInterrupt):
            logger.flush_files()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert _line_count(logger.run_dir / "exp.log") == 3
    assert _line_count(logger.run_dir / "events.jsonl") == 3
    assert _line_count(logger.run_dir / "metrics.csv") == 4
    assert json.loads((logger.run_dir / "best.json").read_text())["val_loss"]["step"] == 2


def test_a_sigterm_flush_in_the_middle_of_a_message_loses_no_line(
    logger: ExperimentLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preemption recipe's race: SIGTERM lands while a message line is being formatted (its
    file's buffer already looked up, the line not yet appended), and the handler flushes there.
    That line must reach exp.log at the next flush, not stay in a list no flush writes."""
    stopped: list[int] = []
    monkeypatch.setattr(run_end, "_signal", None)
    monkeypatch.setattr(flushing, "_previous_sigterm", lambda signum, frame: stopped.append(signum))
    previous = signal.signal(signal.SIGTERM, flushing._on_sigterm)
    original = text_log.format_clock

    def signalled(timestamp: float) -> str:
        monkeypatch.setattr(text_log, "format_clock", original)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0)  # the handler runs here, inside the emit of "step 2"
        return original(timestamp)

    _log_steps(logger, range(2))
    monkeypatch.setattr(text_log, "format_clock", signalled)
    try:
        _log_steps(logger, range(2, 4))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped == [signal.SIGTERM]
    assert _line_count(logger.run_dir / "exp.log") == 2  # the handler's flush: steps 0 and 1
    logger.flush_files()
    lines = (logger.run_dir / "exp.log").read_text(encoding="utf-8").splitlines()
    assert [line.rsplit(" - ", 1)[1] for line in lines] == [f"step {s}" for s in range(4)]
    assert _line_count(logger.run_dir / "events.jsonl") == 4
    assert _line_count(logger.run_dir / "metrics.csv") == 5
