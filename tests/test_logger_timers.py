"""ExperimentLogger.timer() and the deprecated profile(): messages, results, the global switch."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import expmate
from tests.helpers import lines_of, make_logger, read_events

TIMER = re.compile(r"^Timer \[(?P<name>[^\]]+)\]: (?P<secs>\d+\.\d{4})s$")


def test_timer_logs_its_name_and_four_decimals(tmp_path: Path) -> None:
    """A timer logs `Timer [data_loading]: 0.0123s` with the elapsed time of the block."""
    logger, _ = make_logger(tmp_path)
    with logger.timer("data_loading") as result:
        time.sleep(0.01)
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    match = TIMER.match(event["message"])
    assert match is not None and match["name"] == "data_loading"
    assert match["secs"] == f"{result['elapsed']:.4f}"
    assert result["elapsed"] >= 0.01
    assert (event["level"], event["timer"], event["elapsed"]) == (
        "INFO",
        "data_loading",
        result["elapsed"],
    )


def test_timer_result_has_name_and_elapsed(tmp_path: Path) -> None:
    """The result dict holds the name and, after the block, a positive elapsed time."""
    logger, _ = make_logger(tmp_path)
    with logger.timer("step") as result:
        assert result == {"name": "step", "elapsed": 0.0}
        time.sleep(0.005)
    logger.close()
    assert result["name"] == "step"
    assert result["elapsed"] > 0


def test_silent_timer_measures_but_logs_nothing(tmp_path: Path) -> None:
    """log_result=False fills result['elapsed'] and writes no event."""
    logger, _ = make_logger(tmp_path)
    with logger.timer("forward", log_result=False) as result:
        time.sleep(0.005)
    logger.close()
    assert result["elapsed"] >= 0.005
    assert lines_of(tmp_path / "events.jsonl") == []


def test_timer_switched_off_globally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """expmate.timer = False: no event and result['elapsed'] stays 0.0."""
    monkeypatch.setattr(expmate, "timer", False)
    logger, _ = make_logger(tmp_path)
    with logger.timer("t") as result:
        time.sleep(0.002)
    logger.close()
    assert result["elapsed"] == 0.0
    assert lines_of(tmp_path / "events.jsonl") == []


def test_timer_inside_a_stage_carries_the_stage(tmp_path: Path) -> None:
    """A timer event inside `epoch` carries stage=epoch and the stage metadata."""
    logger, _ = make_logger(tmp_path)
    with logger.stage("epoch", epoch=1), logger.timer("t"):
        pass
    logger.close()
    (event,) = [e for e in read_events(tmp_path / "events.jsonl") if "timer" in e]
    assert (event["stage"], event["epoch"]) == ("epoch", 1)


def test_timer_with_an_exception_logs_status_error(tmp_path: Path) -> None:
    """A failing block is still timed, its event says status=error, and the error propagates."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(ZeroDivisionError), logger.timer("bad") as result:
        _ = 1 / 0
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert (event["timer"], event["status"], event["elapsed"]) == (
        "bad",
        "error",
        result["elapsed"],
    )


def test_timer_is_dropped_below_the_level(tmp_path: Path) -> None:
    """Timer events are INFO: with log_level=WARNING they are not written."""
    logger, _ = make_logger(tmp_path, log_level="WARNING")
    with logger.timer("t") as result:
        time.sleep(0.002)
    logger.close()
    assert result["elapsed"] > 0
    assert lines_of(tmp_path / "events.jsonl") == []


def test_timer_with_empty_name_is_refused(tmp_path: Path) -> None:
    """timer('') raises ValueError."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(ValueError, match="''"):
        logger.timer("")
    logger.close()


def test_profile_warns_and_times(tmp_path: Path) -> None:
    """profile() gives a DeprecationWarning and still logs `Timer [name]: ...s`."""
    logger, _ = make_logger(tmp_path)
    with pytest.warns(DeprecationWarning, match=r"timer\(\)") as caught:
        block = logger.profile("old")
    with block as result:
        time.sleep(0.002)
    logger.close()
    assert caught[0].filename == __file__  # the warning points at the caller's line
    (event,) = read_events(tmp_path / "events.jsonl")
    assert event["message"] == f"Timer [old]: {result['elapsed']:.4f}s"
