"""ExperimentLogger.stage(): START/END messages, paths, inherited metadata, errors, threads."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from tests.helpers import lines_of, make_logger, read_events, transcript

END = re.compile(r"^Stage \[(?P<path>[^\]]+)\] - END \((?P<secs>\d+\.\d{3})s\)$")


def _messages(run_dir: Path) -> list[str]:
    return [e["message"] for e in read_events(run_dir / "events.jsonl")]


def test_stage_logs_start_and_end(tmp_path: Path) -> None:
    """A stage logs `Stage [training] - START` and `Stage [training] - END (0.000s)`."""
    logger, _ = make_logger(tmp_path)
    with logger.stage("training"):
        pass
    logger.close()
    start, end = _messages(tmp_path)
    assert start == "Stage [training] - START"
    match = END.match(end)
    assert match is not None and match["path"] == "training"


def test_stage_metadata_is_shown_in_the_start_message(tmp_path: Path) -> None:
    """Metadata appear as `(epoch=5, lr=0.001)` in the START message only."""
    logger, _ = make_logger(tmp_path)
    with logger.stage("epoch", epoch=5, lr=0.001):
        pass
    logger.close()
    start, end = _messages(tmp_path)
    assert start == "Stage [epoch] (epoch=5, lr=0.001) - START"
    assert END.match(end) is not None


def test_stage_events_carry_stage_event_elapsed_and_status(tmp_path: Path) -> None:
    """START has stage_event=start; END adds elapsed (equal to info['elapsed']) and status=ok."""
    logger, _ = make_logger(tmp_path)
    with logger.stage("train", epoch=2) as info:
        pass
    logger.close()
    start, end = read_events(tmp_path / "events.jsonl")
    drop = ("timestamp", "run_id", "rank", "message")
    assert {k: v for k, v in start.items() if k not in drop} == {
        "level": "INFO",
        "stage": "train",
        "epoch": 2,
        "stage_event": "start",
    }
    assert {k: v for k, v in end.items() if k not in drop} == {
        "level": "INFO",
        "stage": "train",
        "epoch": 2,
        "stage_event": "end",
        "elapsed": info["elapsed"],
        "status": "ok",
    }
    assert info["path"] == "train"
    assert info["elapsed"] >= 0.0


def test_nested_stages_build_the_full_path(tmp_path: Path) -> None:
    """Three nested stages log paths a, a/b and a/b/c (not just the parent's short name)."""
    logger, _ = make_logger(tmp_path)
    with logger.stage("a"), logger.stage("b"), logger.stage("c"):
        pass
    logger.close()
    messages = _messages(tmp_path)
    assert messages[:3] == [
        "Stage [a] - START",
        "Stage [a/b] - START",
        "Stage [a/b/c] - START",
    ]
    assert [END.match(m)["path"] for m in messages[3:]] == ["a/b/c", "a/b", "a"]  # type: ignore[index]


def test_every_event_inside_a_stage_carries_path_and_all_metadata(tmp_path: Path) -> None:
    """info, timer and stage events at depth 3 carry `a/b/c` and every enclosing stage's metadata."""
    logger, _ = make_logger(tmp_path)
    with (
        logger.stage("a", epoch=5),
        logger.stage("b", phase="train"),
        logger.stage("c", micro=2),
    ):
        logger.info("inside", extra=1)
        with logger.timer("t"):
            pass
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    inner = [e for e in events if e.get("stage") == "a/b/c"]
    assert [e["message"] for e in inner][:2] == ["Stage [a/b/c] (micro=2) - START", "inside"]
    assert inner[2]["timer"] == "t"
    assert inner[3]["stage_event"] == "end"
    assert len(inner) == 4
    for event in inner:
        assert (event["epoch"], event["phase"], event["micro"]) == (5, "train", 2)
    (info,) = [e for e in events if e["message"] == "inside"]
    assert info["extra"] == 1


def test_inner_metadata_overrides_outer_of_the_same_name(tmp_path: Path) -> None:
    """An inner stage's `lr=0.1` replaces the outer `lr=1.0` inside it, not outside."""
    logger, _ = make_logger(tmp_path)
    with logger.stage("outer", lr=1.0):
        with logger.stage("inner", lr=0.1):
            logger.info("in")
        logger.info("out")
    logger.close()
    events = {e["message"]: e for e in read_events(tmp_path / "events.jsonl")}
    assert (events["in"]["lr"], events["out"]["lr"]) == (0.1, 1.0)


def test_events_after_a_stage_carry_no_stage(tmp_path: Path) -> None:
    """Once the block is left, messages carry no stage field and no stage metadata."""
    logger, _ = make_logger(tmp_path)
    with logger.stage("s", epoch=1):
        pass
    logger.info("after")
    logger.close()
    after = read_events(tmp_path / "events.jsonl")[-1]
    assert "stage" not in after and "epoch" not in after


def test_stage_lines_reach_exp_log(tmp_path: Path) -> None:
    """exp.log holds the stage messages as plain lines, in order."""
    logger, _ = make_logger(tmp_path)
    with logger.stage("s"):
        logger.info("work")
    logger.close()
    assert lines_of(tmp_path / "exp.log") == transcript(read_events(tmp_path / "events.jsonl"))


def test_error_inside_stage_logs_error_then_end_and_propagates(tmp_path: Path) -> None:
    """An exception logs an ERROR event, then END with status=error, and is re-raised."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(KeyError, match="missing"), logger.stage("load", shard=3):
        raise KeyError("missing")
    logger.close()
    start, error, end = read_events(tmp_path / "events.jsonl")
    assert start["message"] == "Stage [load] (shard=3) - START"
    assert error["level"] == "ERROR"
    assert re.fullmatch(
        r"Stage \[load\] - ERROR after \d+\.\d{3}s: KeyError: 'missing'", error["message"]
    )
    assert (error["stage_event"], error["error"], error["shard"]) == (
        "error",
        "KeyError: 'missing'",
        3,
    )
    assert END.match(end["message"]) is not None
    assert (end["level"], end["stage_event"], end["status"]) == ("INFO", "end", "error")


def test_keyboard_interrupt_in_stage_is_ended_as_interrupted(tmp_path: Path) -> None:
    """KeyboardInterrupt logs no ERROR event; END says status=interrupted."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(KeyboardInterrupt), logger.stage("loop"):
        raise KeyboardInterrupt
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [(e["level"], e["stage_event"]) for e in events] == [("INFO", "start"), ("INFO", "end")]
    assert events[1]["status"] == "interrupted"


def test_stage_path_is_restored_after_an_error(tmp_path: Path) -> None:
    """After a failed inner stage, messages in the outer stage carry the outer path again."""
    logger, _ = make_logger(tmp_path)
    with logger.stage("outer"):
        with pytest.raises(RuntimeError), logger.stage("inner"):
            raise RuntimeError("boom")
        logger.info("still outer")
    logger.close()
    (event,) = [e for e in read_events(tmp_path / "events.jsonl") if e["message"] == "still outer"]
    assert event["stage"] == "outer"


def test_stage_stacks_are_per_thread(tmp_path: Path) -> None:
    """A thread opening a stage does not change the main thread's path, nor inherit it."""
    logger, _ = make_logger(tmp_path)
    entered = threading.Event()
    release = threading.Event()

    def worker() -> None:
        with logger.stage("loader"):
            logger.info("from worker")
            entered.set()
            release.wait(5)

    with logger.stage("epoch"):
        thread = threading.Thread(target=worker)
        thread.start()
        assert entered.wait(5)
        logger.info("from main")
        release.set()
        thread.join(5)
    logger.close()
    events = {e["message"]: e for e in read_events(tmp_path / "events.jsonl")}
    assert events["from main"]["stage"] == "epoch"
    assert events["from worker"]["stage"] == "loader"
    assert "Stage [loader] - START" in events


def test_stage_metadata_with_reserved_name_names_it(tmp_path: Path) -> None:
    """stage('s', level=1) raises ValueError naming `level`; nothing is logged."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(ValueError, match="level"):
        logger.stage("s", level=1)
    with pytest.raises(ValueError, match="elapsed"):
        logger.stage("s", elapsed=1)
    logger.close()
    assert lines_of(tmp_path / "events.jsonl") == []


def test_stage_with_empty_name_is_refused(tmp_path: Path) -> None:
    """stage('') raises ValueError naming the empty name."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(ValueError, match="''"):
        logger.stage("")
    logger.close()


def test_stage_after_close_raises(tmp_path: Path) -> None:
    """Entering a stage on a closed logger raises RuntimeError like any other log call."""
    logger, _ = make_logger(tmp_path)
    logger.close()
    with pytest.raises(RuntimeError, match="closed"), logger.stage("late"):
        pass


def test_stage_messages_follow_the_level_filter(tmp_path: Path) -> None:
    """With log_level=WARNING, START/END are dropped but the ERROR of a failing stage is kept."""
    logger, _ = make_logger(tmp_path, log_level="WARNING")
    with pytest.raises(ValueError), logger.stage("s"):
        raise ValueError("bad")
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [e["stage_event"] for e in events] == ["error"]
