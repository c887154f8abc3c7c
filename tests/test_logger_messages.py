"""ExperimentLogger messages: levels, exp.log lines, JSONL events, fields, console and ranks."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import expmate
from tests.helpers import clock, lines_of, make_logger, read_events, transcript

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - [A-Z]+ - ")


def test_info_writes_one_exact_exp_log_line(tmp_path: Path) -> None:
    """info() writes `YYYY-MM-DD HH:MM:SS - INFO - message`, the time taken from the event."""
    logger, _ = make_logger(tmp_path)
    logger.info("Training started")
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert lines_of(tmp_path / "exp.log") == [
        f"{clock(event['timestamp'])} - INFO - Training started"
    ]


def test_level_methods_write_their_level(tmp_path: Path) -> None:
    """debug/info/warning/error/critical each write their own level name."""
    logger, _ = make_logger(tmp_path, log_level="DEBUG")
    logger.debug("d")
    logger.info("i")
    logger.warning("w")
    logger.error("e")
    logger.critical("c")
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [(e["level"], e["message"]) for e in events] == [
        ("DEBUG", "d"),
        ("INFO", "i"),
        ("WARNING", "w"),
        ("ERROR", "e"),
        ("CRITICAL", "c"),
    ]
    assert lines_of(tmp_path / "exp.log") == transcript(events)


def test_event_has_exactly_the_base_fields(tmp_path: Path) -> None:
    """A plain message event holds timestamp, level, message, run_id and rank, in that order."""
    logger, _ = make_logger(tmp_path / "exp1")
    before = time.time()
    logger.info("hello")
    after = time.time()
    logger.close()
    (event,) = read_events(tmp_path / "exp1" / "events.jsonl")
    assert list(event) == ["timestamp", "level", "message", "run_id", "rank"]
    assert isinstance(event["timestamp"], float)
    assert before <= event["timestamp"] <= after
    assert {k: v for k, v in event.items() if k != "timestamp"} == {
        "level": "INFO",
        "message": "hello",
        "run_id": "exp1",
        "rank": 0,
    }


def test_run_id_argument_is_written_into_events(tmp_path: Path) -> None:
    """An explicit run_id replaces the directory name in every event."""
    logger, _ = make_logger(tmp_path / "dir", run_id="my-run")
    logger.info("x")
    logger.close()
    assert read_events(tmp_path / "dir" / "events.jsonl")[0]["run_id"] == "my-run"


def test_generic_log_accepts_names_in_any_case_and_numbers(tmp_path: Path) -> None:
    """log(level=) takes INFO, 'warning', 'warn' and 40 alike."""
    logger, _ = make_logger(tmp_path)
    logger.log("a", level="INFO")
    logger.log("b", level="warning")
    logger.log("c", level="warn")
    logger.log("d", level=40)
    logger.log("e")
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [e["level"] for e in events] == ["INFO", "WARNING", "WARNING", "ERROR", "INFO"]


def test_generic_log_with_unknown_level_names_it(tmp_path: Path) -> None:
    """log(level='LOUD') raises ValueError naming 'LOUD' and writes nothing."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(ValueError, match="'LOUD'"):
        logger.log("x", level="LOUD")
    logger.close()
    assert lines_of(tmp_path / "events.jsonl") == []


def test_unknown_log_level_at_construction_names_it(tmp_path: Path) -> None:
    """ExperimentLogger(log_level='verbose') raises ValueError naming the level."""
    with pytest.raises(ValueError, match="'verbose'"):
        make_logger(tmp_path, log_level="verbose")


def test_level_filtering_drops_lower_levels_everywhere(tmp_path: Path) -> None:
    """With log_level=WARNING, debug and info reach neither console, exp.log nor JSONL."""
    logger, console = make_logger(tmp_path, log_level="WARNING")
    logger.debug("d")
    logger.info("i")
    logger.log("i2", level="INFO")
    logger.warning("w")
    logger.error("e")
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [e["message"] for e in events] == ["w", "e"]
    assert lines_of(tmp_path / "exp.log") == transcript(events)
    assert console.getvalue().splitlines() == transcript(events)


def test_debug_is_dropped_at_the_default_info_level(tmp_path: Path) -> None:
    """The default level is INFO: debug() writes nothing."""
    logger, _ = make_logger(tmp_path)
    logger.debug("hidden")
    logger.close()
    assert lines_of(tmp_path / "events.jsonl") == []


def test_package_log_level_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """expmate.log_level = 'DEBUG' makes loggers built without log_level keep debug()."""
    monkeypatch.setattr(expmate, "log_level", "DEBUG")
    logger, _ = make_logger(tmp_path)
    logger.debug("shown")
    logger.close()
    assert [e["message"] for e in read_events(tmp_path / "events.jsonl")] == ["shown"]


def test_keyword_fields_go_to_jsonl_only(tmp_path: Path) -> None:
    """User keyword fields are kept in the JSONL event and are not in the exp.log line."""
    logger, _ = make_logger(tmp_path)
    logger.info("step done", step=3, loss=0.25, tag="warmup")
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert {k: event[k] for k in ("step", "loss", "tag")} == {
        "step": 3,
        "loss": 0.25,
        "tag": "warmup",
    }
    assert lines_of(tmp_path / "exp.log") == [f"{clock(event['timestamp'])} - INFO - step done"]


def test_keyword_field_with_reserved_name_names_it(tmp_path: Path) -> None:
    """A keyword field called `stage` raises ValueError naming it; nothing is written."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(ValueError, match="stage"):
        logger.info("x", stage="mine")
    logger.close()
    assert lines_of(tmp_path / "exp.log") == []


def test_non_string_message_is_written_as_its_str(tmp_path: Path) -> None:
    """A message that is not a string is written as str(message)."""
    logger, _ = make_logger(tmp_path)
    logger.info(3.5)
    logger.info({"a": 1})
    logger.close()
    assert [e["message"] for e in read_events(tmp_path / "events.jsonl")] == ["3.5", "{'a': 1}"]


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


class _BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_fields_json_cannot_encode_are_converted(tmp_path: Path) -> None:
    """Path, numpy array and scalar, tensor, set and plain objects become JSON values."""
    logger, _ = make_logger(tmp_path)
    logger.info(
        "odd",
        path=Path("/data/x.pt"),
        array=np.array([[1, 2], [3, 4]]),
        scalar=np.float32(0.5),
        tensor=torch.tensor([1.5, 2.5], requires_grad=True),
        names={"b", "a"},
        thing=_Opaque(),
        broken=_BrokenRepr(),
    )
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert {k: event[k] for k in ("path", "array", "scalar", "tensor", "names", "thing")} == {
        "path": "/data/x.pt",
        "array": [[1, 2], [3, 4]],
        "scalar": 0.5,
        "tensor": [1.5, 2.5],
        "names": ["a", "b"],
        "thing": "<opaque>",
    }
    assert event["broken"] == "<_BrokenRepr object>"


def test_circular_field_is_written_as_its_repr(tmp_path: Path) -> None:
    """A list that contains itself is written as its repr instead of failing."""
    loop: list = [1]
    loop.append(loop)
    logger, _ = make_logger(tmp_path)
    logger.info("loop", value=loop)
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert event["value"] == "[1, [...]]"


def test_huge_integer_field_keeps_the_event(tmp_path: Path) -> None:
    """A keyword field ``n=10**5000`` does not raise or lose the event: it is a hex string."""
    logger, console = make_logger(tmp_path)
    logger.info("huge", n=10**5000, m=[2**20000])
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert (event["message"], event["n"], event["m"]) == ("huge", hex(10**5000), [hex(2**20000)])
    assert lines_of(tmp_path / "exp.log") == transcript([event])
    assert console.getvalue().endswith(" - INFO - huge\n")


def test_non_finite_fields_are_spelled_as_strings(tmp_path: Path) -> None:
    """NaN and infinities in fields, also nested and in numpy arrays, become strings."""
    logger, _ = make_logger(tmp_path)
    logger.info(
        "nan",
        a=float("nan"),
        b=float("inf"),
        c=-float("inf"),
        nested={"x": [1.0, float("nan")]},
        array=np.array([np.nan, 1.0]),
        npnan=np.float64("nan"),
    )
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert {k: event[k] for k in ("a", "b", "c", "nested", "array", "npnan")} == {
        "a": "NaN",
        "b": "Infinity",
        "c": "-Infinity",
        "nested": {"x": [1.0, "NaN"]},
        "array": ["NaN", 1.0],
        "npnan": "NaN",
    }


def test_console_line_matches_exp_log_without_colors(tmp_path: Path) -> None:
    """With color=False the console line is exactly the exp.log line."""
    logger, console = make_logger(tmp_path)
    logger.info("hello")
    logger.warning("careful")
    logger.close()
    assert console.getvalue() == (tmp_path / "exp.log").read_text(encoding="utf-8")
    assert all(LINE.match(line) for line in console.getvalue().splitlines())


def test_console_defaults_to_sys_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without console_stream the lines are printed to sys.stdout."""
    logger = expmate.ExperimentLogger(run_dir=tmp_path, color=False)
    logger.info("to stdout")
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert capsys.readouterr().out == f"{clock(event['timestamp'])} - INFO - to stdout\n"


def test_console_output_false_prints_nothing(tmp_path: Path) -> None:
    """console_output=False keeps the console silent; exp.log still gets the line."""
    logger, console = make_logger(tmp_path, console_output=False)
    logger.info("quiet")
    logger.close()
    assert console.getvalue() == ""
    assert len(lines_of(tmp_path / "exp.log")) == 1


def test_rank_one_prints_nothing_and_writes_rank_files(tmp_path: Path) -> None:
    """rank=1 has no console and writes exp_rank1.log and events_rank1.jsonl with rank 1."""
    logger, console = make_logger(tmp_path, rank=1)
    logger.info("from rank 1")
    logger.warning("rank 1 warns")
    logger.close()
    assert console.getvalue() == ""
    events = read_events(tmp_path / "events_rank1.jsonl")
    assert [(e["rank"], e["message"]) for e in events] == [
        (1, "from rank 1"),
        (1, "rank 1 warns"),
    ]
    assert lines_of(tmp_path / "exp_rank1.log") == transcript(events)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "attempts_rank1.jsonl",
        "events_rank1.jsonl",
        "exp_rank1.log",
    ]


def test_verbose_false_silences_the_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """expmate.verbose = False stops console lines from the next call on; files still get them."""
    logger, console = make_logger(tmp_path)
    logger.info("shown")
    monkeypatch.setattr(expmate, "verbose", False)
    logger.info("hidden")
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    assert console.getvalue().splitlines() == transcript(events[:1])
    assert lines_of(tmp_path / "exp.log") == transcript(events)


def test_files_never_hold_color_codes(tmp_path: Path) -> None:
    """With color=True the console is colored but exp.log and events.jsonl hold no escape."""
    logger, console = make_logger(tmp_path, color=True, log_level="DEBUG")
    logger.debug("d")
    logger.error("e")
    with logger.stage("s"), logger.timer("t"):
        logger.info("i")
    logger.close()
    assert "\x1b[" in console.getvalue()
    for name in ("exp.log", "events.jsonl"):
        assert "\x1b" not in (tmp_path / name).read_text(encoding="utf-8")


def test_colored_console_line_for_info(tmp_path: Path) -> None:
    """With color=True an INFO line is `time - <green>INFO<reset> - <green>msg<reset>`."""
    logger, console = make_logger(tmp_path, color=True)
    logger.info("hello")
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert console.getvalue() == (
        f"{clock(event['timestamp'])} - \x1b[32mINFO\x1b[0m - \x1b[32mhello\x1b[0m\n"
    )


def test_multiline_message_is_kept_whole_in_jsonl(tmp_path: Path) -> None:
    """A message with a newline stays one JSONL line; its text is kept exactly."""
    logger, _ = make_logger(tmp_path)
    logger.info('two\nlines "quoted" \u00e9')
    logger.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert event["message"] == 'two\nlines "quoted" \u00e9'


def test_rank_is_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without rank=, RANK=3 (as torchrun sets it) makes the logger write the rank-3 files."""
    monkeypatch.setenv("RANK", "3")
    logger, console = make_logger(tmp_path)
    logger.info("hi")
    logger.close()
    assert console.getvalue() == ""
    assert [(e["rank"], e["message"]) for e in read_events(tmp_path / "events_rank3.jsonl")] == [
        (3, "hi")
    ]


def test_filtered_level_after_close_still_raises(tmp_path: Path) -> None:
    """debug() on a closed INFO logger raises RuntimeError like every other log call."""
    logger, _ = make_logger(tmp_path)
    logger.close()
    with pytest.raises(RuntimeError, match="closed"):
        logger.debug("late")
