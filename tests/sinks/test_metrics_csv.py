"""expmate.sinks.metrics_csv: RFC 4180 quoting, exact numbers, one header per file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from expmate.sinks.metrics_csv import HEADER, MetricsCsvSink, csv_field, format_value


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("loss", "loss"),
        ("a,b", '"a,b"'),
        ('say "hi"', '"say ""hi"""'),
        ("two\nlines", '"two\nlines"'),
        ("cr\r", '"cr\r"'),
        (" padded", '" padded"'),
    ],
)
def test_csv_field_quotes_only_when_needed(text: str, field: str) -> None:
    """Fields with a comma, quote, CR, LF or outer spaces are quoted, quotes doubled."""
    assert csv_field(text) == field
    assert next(csv.reader(io.StringIO(field + "\n"))) == [text]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-300, "1e-300"),
        (3, "3"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (-float("inf"), "-inf"),
    ],
)
def test_format_value_is_exact(value: float, text: str) -> None:
    """Floats are written by repr (exact round trip), ints as ints, nan/inf as such."""
    assert format_value(value) == text


def test_header_then_rows(tmp_path: Path) -> None:
    """A new file gets the header once, then `step,split,name,value,wall_time` rows."""
    path = tmp_path / "metrics.csv"
    sink = MetricsCsvSink(path)
    sink.row(0, MetricsCsvSink.middle("train", "loss"), 0.5, 1706017822.0)
    sink.row(1, MetricsCsvSink.middle("a,b", "x"), 7, 1706017823.4567)
    sink.close()
    assert HEADER == "step,split,name,value,wall_time\n"
    assert path.read_text(encoding="utf-8") == (
        "step,split,name,value,wall_time\n"
        "0,train,loss,0.5,1706017822.000\n"
        '1,"a,b",x,7,1706017823.457\n'
    )


def test_reopened_file_gets_no_second_header(tmp_path: Path) -> None:
    """A sink on a file that already has rows appends rows only."""
    path = tmp_path / "metrics.csv"
    first = MetricsCsvSink(path)
    first.row(0, ",train,loss,", 1.0, 0.0)
    first.close()
    second = MetricsCsvSink(path)
    second.row(1, ",train,loss,", 2.0, 0.0)
    second.close()
    assert path.read_text(encoding="utf-8") == (
        "step,split,name,value,wall_time\n0,train,loss,1.0,0.000\n1,train,loss,2.0,0.000\n"
    )


def test_empty_existing_file_gets_the_header(tmp_path: Path) -> None:
    """An existing but empty metrics.csv is given its header."""
    path = tmp_path / "metrics.csv"
    path.write_text("", encoding="utf-8")
    sink = MetricsCsvSink(path)
    sink.row(0, ",val,acc,", 0.9, 0.0)
    sink.close()
    assert path.read_text(encoding="utf-8") == HEADER + "0,val,acc,0.9,0.000\n"
