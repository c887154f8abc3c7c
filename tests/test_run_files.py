"""Tolerant readers of run files: cut last lines, bad rows, quoted fields, corrupt JSON."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from expmate.run_files import (
    MetricColumns,
    RunError,
    RunFileWarning,
    read_json_object,
    read_jsonl,
    read_metrics_csv,
)

HEADER = "step,split,name,value,wall_time\n"


def _read(path: Path) -> tuple[MetricColumns, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        columns = read_metrics_csv(path, rank=2)
    return columns, [str(w.message) for w in caught if w.category is RunFileWarning]


def test_quoted_fields_and_nonfinite_values(tmp_path: Path) -> None:
    """RFC 4180 quoting (a comma, a quote, a newline) and nan/inf read back exactly."""
    path = tmp_path / "metrics.csv"
    path.write_text(HEADER + '0,"val, clean","say ""hi""\nthere",nan,1.5\n1,val,loss,-inf,2.0\n')
    columns, warned = _read(path)
    assert warned == []
    assert columns.split == ["val, clean", "val"]
    assert columns.name == ['say "hi"\nthere', "loss"]
    assert columns.value[0] != columns.value[0] and columns.value[1] == float("-inf")
    assert (columns.step, columns.wall_time, columns.rank) == ([0, 1], [1.5, 2.0], [2, 2])


def test_cut_last_line_and_bad_rows_are_skipped_with_warnings(tmp_path: Path) -> None:
    """A last line without newline is dropped (even one that would parse); a repeated header
    is skipped silently; a row that does not parse is counted."""
    path = tmp_path / "metrics.csv"
    path.write_text(HEADER + "0,val,loss,0.5,1.0\n" + HEADER + "x,val,loss,1,1\n1,val,loss,0.4")
    columns, warned = _read(path)
    assert (columns.step, columns.value) == ([0], [0.5])
    assert warned == [
        f"{path}: its last line is cut short (the run is being written or was killed); "
        "14 bytes skipped",
        f"{path}: 1 rows that do not parse skipped",
    ]


def test_not_a_metrics_file(tmp_path: Path) -> None:
    """A CSV with another header is a RunError naming it; a missing file reads as no rows."""
    path = tmp_path / "metrics.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(RunError) as info:
        read_metrics_csv(path, rank=0)
    assert str(info.value) == (
        f"{str(path)!r} is not a metrics file: its header is 'a,b', "
        "not 'step,split,name,value,wall_time'"
    )
    assert read_metrics_csv(tmp_path / "absent.csv", rank=0).step == []


def test_jsonl_events_get_their_rank(tmp_path: Path) -> None:
    """Events without a rank get the file's; non-object lines are skipped with one warning."""
    path = tmp_path / "events_rank3.jsonl"
    path.write_text('{"message": "a"}\n[1]\n{"message": "b", "rank": 5}\nnot json\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = read_jsonl(path, rank=3)
    assert events == [{"message": "a", "rank": 3}, {"message": "b", "rank": 5}]
    assert [str(w.message) for w in caught] == [
        f"{path}: 2 lines that are not JSON objects skipped"
    ]


def test_json_object_files(tmp_path: Path) -> None:
    """Absent: None; not JSON or not an object: RunError naming the file."""
    path = tmp_path / "summary.json"
    assert read_json_object(path) is None
    path.write_text('{"status": "running"}')
    assert read_json_object(path) == {"status": "running"}
    path.write_text('"text"')
    with pytest.raises(RunError, match=r"holds str, not a JSON object"):
        read_json_object(path)
