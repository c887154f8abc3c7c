"""expmate.sinks.jsonl: strict-JSON event lines and field values JSON cannot encode."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
import torch

from expmate.events import KIND_STAGE, Event
from expmate.sinks.jsonl import JsonlSink, json_line_value


def _strict(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"bare {name}")

    return json.loads(text, parse_constant=refuse)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Broken:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ('a"b\n', '"a\\"b\\n"'),
        ("\u00e9", '"\u00e9"'),
        (3, "3"),
        (True, "true"),
        (None, "null"),
        (0.1, "0.1"),
        (float("nan"), '"NaN"'),
        (float("inf"), '"Infinity"'),
        (-float("inf"), '"-Infinity"'),
        ([1, float("nan")], '[1, "NaN"]'),
        ({"a": {"b": float("inf")}}, '{"a": {"b": "Infinity"}}'),
        (PurePosixPath("/a/b"), '"/a/b"'),
        ({3, 1, 2}, "[1, 2, 3]"),
        (frozenset({"x"}), '["x"]'),
        (datetime.date(2025, 1, 23), '"2025-01-23"'),
        (Color.RED, '"red"'),
        (Point(1, 2.5), '{"x": 1, "y": 2.5}'),
        (b"raw\xff", '"raw\\\\xff"'),
        (np.int64(4), "4"),
        (np.float32(0.5), "0.5"),
        (np.float64("nan"), '"NaN"'),
        (np.array([[1, 2]]), "[[1, 2]]"),
        (torch.tensor([0.5, float("inf")]), '[0.5, "Infinity"]'),
        (torch.tensor(2.0, requires_grad=True), "2.0"),
        (Opaque(), '"Opaque()"'),
        ({(1, 2): "tuple key"}, "\"{(1, 2): 'tuple key'}\""),
    ],
    ids=lambda v: type(v).__name__,
)
def test_json_line_value_is_strict_json(value: Any, text: str) -> None:
    """Every value becomes strict JSON text: NaN/Infinity as strings, odd types converted."""
    assert json_line_value(value) == text
    _strict(text)


def test_integers_over_4300_digits_are_written_as_hex_strings() -> None:
    """Python refuses decimal text for such integers; they are written as exact ``0x`` strings,
    also nested, so the event is never lost."""
    huge = 10**5000
    assert json_line_value(huge) == f'"{hex(huge)}"'
    assert json_line_value([1, huge]) == f'[1, "{hex(huge)}"]'
    assert (
        json_line_value({"n": -huge, "x": float("nan")}) == f'{{"n": "{hex(-huge)}", "x": "NaN"}}'
    )
    assert json_line_value(10**4000) == str(10**4000)
    assert int(json.loads(json_line_value(huge)), 16) == huge


def test_json_line_value_of_a_circular_list_is_its_repr() -> None:
    """A self-containing list is written as its repr string instead of raising."""
    loop: list[Any] = []
    loop.append(loop)
    assert json_line_value(loop) == '"[[...]]"'


def test_json_line_value_survives_a_failing_repr() -> None:
    """An object whose __repr__ raises is named by its type."""
    assert json_line_value(Broken()) == '"<Broken object>"'


def test_event_line_layout(tmp_path: Path) -> None:
    """A line is timestamp, level, message, run_id, rank, then stage, fields and rate_limited."""
    sink = JsonlSink(tmp_path / "events.jsonl", run_id='run "1"', rank=2)
    sink.emit(Event(1706017822.5, "INFO", "plain"))
    sink.emit(
        Event(
            1706017823.25,
            "INFO",
            "Stage [a/b] - START",
            KIND_STAGE,
            "a/b",
            {"epoch": 5, "stage_event": "start"},
            rate_limited=True,
        )
    )
    sink.close()
    assert (tmp_path / "events.jsonl").read_text(encoding="utf-8") == (
        '{"timestamp": 1706017822.5, "level": "INFO", "message": "plain", '
        '"run_id": "run \\"1\\"", "rank": 2}\n'
        '{"timestamp": 1706017823.25, "level": "INFO", "message": "Stage [a/b] - START", '
        '"run_id": "run \\"1\\"", "rank": 2, "stage": "a/b", "epoch": 5, '
        '"stage_event": "start", "rate_limited": true}\n'
    )


def test_every_line_parses_strictly(tmp_path: Path) -> None:
    """Lines with awkward messages and fields all parse with a strict reader, one object each."""
    sink = JsonlSink(tmp_path / "events.jsonl", run_id="r", rank=0)
    messages = ["tab\there", "nul\x00", "line\u2028sep", "emoji \U0001f600", "lone \ud800"]
    for message in messages:
        sink.emit(Event(1.0, "INFO", message, fields={"v": float("nan"), "p": Path("x")}))
    sink.close()
    text = (tmp_path / "events.jsonl").read_text(encoding="utf-8")
    events = [_strict(line) for line in text[:-1].split("\n")]
    assert [e["message"] for e in events] == messages
    assert all((e["v"], e["p"]) == ("NaN", "x") for e in events)
