"""ExperimentLogger life cycle: run directory, flush, close, reopening, threads, bad options."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from expmate import ExperimentLogger
from tests.helpers import lines_of, make_logger, read_events, transcript


def test_missing_run_dir_is_created_with_parents(tmp_path: Path) -> None:
    """run_dir a/b/c is created, parents included."""
    logger, _ = make_logger(tmp_path / "a" / "b" / "c")
    logger.close()
    assert (tmp_path / "a" / "b" / "c" / "events.jsonl").is_file()


def test_run_dir_that_is_a_file_names_it(tmp_path: Path) -> None:
    """A run_dir that is a file raises NotADirectoryError naming the path, at construction."""
    target = tmp_path / "taken"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match=re.escape(str(target))):
        ExperimentLogger(run_dir=target, console_output=False)
    assert target.read_text(encoding="utf-8") == "x"


def test_run_dir_under_a_file_names_it(tmp_path: Path) -> None:
    """A run_dir whose parent is a file raises OSError naming the run_dir."""
    (tmp_path / "file").write_text("x", encoding="utf-8")
    target = tmp_path / "file" / "run"
    with pytest.raises(OSError, match=re.escape(str(target))):
        ExperimentLogger(run_dir=target, console_output=False)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"flush_interval": 0}, "flush_interval"),
        ({"flush_interval": -1.0}, "-1.0"),
        ({"sync_timeout": 0}, "sync_timeout"),
        ({"reduce": "avg"}, "'avg'"),
    ],
)
def test_bad_options_are_refused_naming_them(tmp_path: Path, kwargs: dict, named: str) -> None:
    """A non-positive interval or an unknown reduction raises ValueError naming it."""
    with pytest.raises(ValueError, match=named):
        ExperimentLogger(run_dir=tmp_path, console_output=False, **kwargs)


def test_flush_puts_lines_on_disk_without_close(tmp_path: Path) -> None:
    """After flush() an unclosed logger's lines, rows and best are all on disk."""
    logger, _ = make_logger(tmp_path)
    logger.info("kept")
    logger.log_metric(step=0, split="val", name="loss", value=0.5)
    logger.flush()
    events = read_events(tmp_path / "events.jsonl")
    assert [e["message"] for e in events] == ["kept"]
    assert lines_of(tmp_path / "exp.log") == transcript(events)
    assert lines_of(tmp_path / "metrics.csv")[1].startswith("0,val,loss,0.5,")
    assert (tmp_path / "best.json").is_file()
    logger.close()


def test_close_twice_is_harmless(tmp_path: Path) -> None:
    """A second close() neither raises nor writes anything."""
    logger, _ = make_logger(tmp_path)
    logger.info("once")
    logger.close()
    before = (tmp_path / "events.jsonl").read_text(encoding="utf-8")
    logger.close()
    logger.flush()
    assert logger.closed
    assert (tmp_path / "events.jsonl").read_text(encoding="utf-8") == before


@pytest.mark.parametrize(
    "call",
    [
        lambda lg: lg.info("late"),
        lambda lg: lg.warning("late"),
        lambda lg: lg.log("late", level="ERROR"),
        lambda lg: lg.log_metric(step=0, split="val", name="loss", value=0.5),
        lambda lg: lg.log_metrics(0, "val", {"loss": 0.5}),
    ],
    ids=["info", "warning", "log", "log_metric", "log_metrics"],
)
def test_logging_after_close_raises(tmp_path: Path, call) -> None:  # type: ignore[no-untyped-def]
    """Logging on a closed logger raises RuntimeError naming the run directory."""
    logger, _ = make_logger(tmp_path)
    logger.close()
    with pytest.raises(RuntimeError, match="closed"):
        call(logger)
    assert lines_of(tmp_path / "events.jsonl") == []


def test_context_manager_closes(tmp_path: Path) -> None:
    """`with ExperimentLogger(...) as logger` closes it and flushes its lines."""
    with ExperimentLogger(run_dir=tmp_path, console_output=False) as logger:
        logger.info("inside")
    assert logger.closed
    assert [e["message"] for e in read_events(tmp_path / "events.jsonl")] == ["inside"]


def test_context_manager_closes_on_an_exception(tmp_path: Path) -> None:
    """An exception in the with-block propagates; the logger is closed and its lines kept."""
    with (
        pytest.raises(RuntimeError, match="boom"),
        ExperimentLogger(run_dir=tmp_path, console_output=False) as logger,
    ):
        logger.info("before")
        raise RuntimeError("boom")
    assert logger.closed
    assert [e["message"] for e in read_events(tmp_path / "events.jsonl")] == ["before"]


def test_reopening_appends_and_says_so(tmp_path: Path) -> None:
    """A second logger on the same run keeps the old lines and logs a resume message."""
    first, _ = make_logger(tmp_path)
    first.info("first run")
    first.close()
    second, _ = make_logger(tmp_path)
    second.info("second run")
    second.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [e["message"] for e in events] == [
        "first run",
        f"Resuming run: appending to existing files in {tmp_path}",
        "second run",
    ]
    assert lines_of(tmp_path / "exp.log") == transcript(events)


def test_torchrun_restart_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TORCHELASTIC_RESTART_COUNT=2 logs a WARNING event with restart_count=2."""
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    logger, _ = make_logger(tmp_path)
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert (event["level"], event["restart_count"]) == ("WARNING", 2)
    assert event["message"] == f"Restarted by torchrun (restart 2); appending to {tmp_path}"


def test_repr_names_dir_rank_and_state(tmp_path: Path) -> None:
    """repr shows the run directory, the rank and open/closed."""
    logger, _ = make_logger(tmp_path)
    assert repr(logger) == f"ExperimentLogger(run_dir={str(tmp_path)!r}, rank=0, open)"
    logger.close()
    assert repr(logger) == f"ExperimentLogger(run_dir={str(tmp_path)!r}, rank=0, closed)"


def test_threads_logging_together_write_whole_lines(tmp_path: Path) -> None:
    """8 threads x 2,000 messages: no error, every line complete and parseable, counts exact."""
    logger, _ = make_logger(tmp_path, console_output=False)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(2000):
                logger.info(f"w{worker} m{i}", worker=worker, i=i)
        except BaseException as exc:  # noqa: BLE001 - collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.close()
    assert errors == []
    events = read_events(tmp_path / "events.jsonl")
    assert len(events) == 16000
    for worker in range(8):
        mine = [e["i"] for e in events if e["worker"] == worker]
        assert mine == list(range(2000))
    text = lines_of(tmp_path / "exp.log")
    assert len(text) == 16000
    assert sorted(line.split(" - ", 2)[2] for line in text) == sorted(
        f"w{w} m{i}" for w in range(8) for i in range(2000)
    )


def test_torchrun_restart_is_recorded_above_the_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restart WARNING is written even when the logger's level is ERROR."""
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    logger, _ = make_logger(tmp_path, log_level="ERROR")
    logger.close()
    assert [e["level"] for e in read_events(tmp_path / "events.jsonl")] == ["WARNING"]


def test_resume_message_is_written_above_the_level(tmp_path: Path) -> None:
    """The resume INFO line is written even when the logger's level is ERROR."""
    make_logger(tmp_path)[0].close()
    logger, _ = make_logger(tmp_path, log_level="ERROR")
    logger.close()
    assert [e["message"] for e in read_events(tmp_path / "events.jsonl")] == [
        f"Resuming run: appending to existing files in {tmp_path}"
    ]
