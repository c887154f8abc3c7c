"""ExperimentLogger.log_every(): console and exp.log thinned, JSONL complete."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from expmate import rate_limit
from tests.helpers import lines_of, make_logger, read_events, transcript


def test_every_n_shows_every_nth_and_jsonl_keeps_all(tmp_path: Path) -> None:
    """every=3 over 10 passes: console and exp.log get passes 0, 3, 6, 9; JSONL gets all 10."""
    logger, console = make_logger(tmp_path)
    for step in range(10):
        with logger.log_every(every=3):
            logger.info(f"step {step}")
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [e["message"] for e in events] == [f"step {i}" for i in range(10)]
    shown = [e for e in events if "rate_limited" not in e]
    assert [e["message"] for e in shown] == ["step 0", "step 3", "step 6", "step 9"]
    assert all(e["rate_limited"] is True for e in events if e not in shown)
    assert lines_of(tmp_path / "exp.log") == transcript(shown)
    assert console.getvalue().splitlines() == transcript(shown)


def test_block_yields_whether_this_pass_is_shown(tmp_path: Path) -> None:
    """`with log_every(every=2) as shown` gives True, False, True, False."""
    logger, _ = make_logger(tmp_path)
    seen = []
    for _ in range(4):
        with logger.log_every(every=2) as shown:
            seen.append(shown)
    logger.close()
    assert seen == [True, False, True, False]


def test_messages_outside_the_block_are_not_limited(tmp_path: Path) -> None:
    """A message after the block reaches exp.log even when the block's pass was suppressed."""
    logger, _ = make_logger(tmp_path)
    for step in range(2):
        with logger.log_every(every=5):
            logger.info(f"limited {step}")
        logger.info(f"free {step}")
    logger.close()
    assert [line.split(" - ", 2)[2] for line in lines_of(tmp_path / "exp.log")] == [
        "limited 0",
        "free 0",
        "free 1",
    ]


def test_two_keyless_blocks_in_one_loop_are_independent(tmp_path: Path) -> None:
    """Two keyless log_every blocks count their own passes (each call site has its limiter)."""
    logger, _ = make_logger(tmp_path)
    for step in range(6):
        with logger.log_every(every=2):
            logger.info(f"a{step}")
        with logger.log_every(every=3):
            logger.info(f"b{step}")
    logger.close()
    assert [line.split(" - ", 2)[2] for line in lines_of(tmp_path / "exp.log")] == [
        "a0",
        "b0",
        "a2",
        "b3",
        "a4",
    ]


def test_same_key_is_one_limiter_across_call_sites(tmp_path: Path) -> None:
    """Two blocks with key='shared' count passes together."""
    logger, _ = make_logger(tmp_path)
    for step in range(3):
        with logger.log_every(every=2, key="shared"):
            logger.info(f"a{step}")
        with logger.log_every(every=2, key="shared"):
            logger.info(f"b{step}")
    logger.close()
    assert [line.split(" - ", 2)[2] for line in lines_of(tmp_path / "exp.log")] == [
        "a0",
        "a1",
        "a2",
    ]


def test_seconds_shows_when_the_interval_has_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """seconds=5 shows the first pass, then the first pass at least 5 s after the last shown."""
    clock = iter([100.0, 101.0, 104.9, 105.0, 106.0, 110.0])
    monkeypatch.setattr(rate_limit, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    logger, _ = make_logger(tmp_path)
    for step in range(6):
        with logger.log_every(seconds=5.0):
            logger.info(f"s{step}")
    logger.close()
    assert [line.split(" - ", 2)[2] for line in lines_of(tmp_path / "exp.log")] == [
        "s0",
        "s3",
        "s5",
    ]
    assert len(read_events(tmp_path / "events.jsonl")) == 6


def test_stage_and_timer_messages_inside_are_limited_too(tmp_path: Path) -> None:
    """Stage and timer events inside a suppressed pass are JSONL-only."""
    logger, _ = make_logger(tmp_path)
    for _ in range(2):
        with logger.log_every(every=2), logger.stage("s"), logger.timer("t"):
            pass
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    assert len(events) == 6
    assert [e.get("rate_limited", False) for e in events] == [False] * 3 + [True] * 3
    assert len(lines_of(tmp_path / "exp.log")) == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"every": 0}, ValueError, "got 0"),
        ({"every": -3}, ValueError, "-3"),
        ({"every": 2.5}, TypeError, "2.5"),
        ({"every": True}, TypeError, "True"),
        ({"seconds": 0.0}, ValueError, "0.0"),
        ({"seconds": float("nan")}, ValueError, "nan"),
        ({"seconds": "5"}, TypeError, "'5'"),
        ({}, ValueError, "every=None, seconds=None"),
        ({"every": 10, "seconds": 1.0}, ValueError, "every=10, seconds=1.0"),
    ],
)
def test_bad_rate_is_refused_naming_it(
    tmp_path: Path, kwargs: dict, error: type[Exception], named: str
) -> None:
    """log_every without exactly one positive every/seconds raises, naming what was given."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(error) as caught:
        logger.log_every(**kwargs)
    logger.close()
    assert named in str(caught.value)
