"""expmate.history: resume markers, the surviving history, bests from rows, how attempts ended."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from expmate.history import (
    attempts_name,
    best_of_rows,
    iter_surviving,
    metrics_name,
    previous_end,
    read_attempts,
    resume_markers,
    surviving_rows,
)


def _marker(step: int, rows: int) -> dict[str, Any]:
    return {"event": "resume", "attempt": 1, "step": step, "metrics_rows": rows}


def test_a_marker_supersedes_earlier_rows_at_or_after_its_step() -> None:
    """Rows before the marker with step >= T go; earlier steps and later rows stay."""
    rows = [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (1, "e"), (2, "f")]
    assert surviving_rows(rows, [_marker(1, 4)]) == [(0, "a"), (1, "e"), (2, "f")]


def test_rows_as_dicts_with_text_steps() -> None:
    """csv.DictReader rows (steps as text) are filtered the same way; the same objects return."""
    text = "step,split,name,value,wall_time\n0,val,loss,1.0,1.0\n5,val,loss,0.1,2.0\n"
    text += "3,val,loss,0.5,3.0\n"
    rows = list(csv.DictReader(io.StringIO(text)))
    kept = surviving_rows(rows, [_marker(3, 2)])
    assert kept == [rows[0], rows[2]]
    assert kept[1] is rows[2]


def test_several_markers_apply_their_lowest_later_step() -> None:
    """A row is superseded by any marker after it: the lowest such step decides."""
    rows = [(s,) for s in [0, 1, 2, 3, 4, 5]]  # attempt 0 reached step 5
    rows += [(s,) for s in [3, 4, 5, 6]]  # attempt 1 resumed at 3 (marker after 6 rows)
    rows += [(s,) for s in [2, 3]]  # attempt 2 resumed at 2 (marker after 10 rows)
    markers = [_marker(3, 6), _marker(2, 10)]
    assert surviving_rows(rows, markers) == [(0,), (1,), (2,), (3,)]
    assert surviving_rows(rows[:10], markers[:1]) == [(s,) for s in [0, 1, 2, 3, 4, 5, 6]]


def test_other_records_are_ignored_and_no_marker_keeps_everything() -> None:
    """Start and end records do not filter; without markers every row survives."""
    rows = [(0,), (1,)]
    records = [{"event": "start", "attempt": 0}, {"event": "end", "attempt": 0}]
    assert surviving_rows(rows, records) == rows
    assert surviving_rows(rows, []) == rows


def test_malformed_rows_count_but_never_go() -> None:
    """A row whose step is not a number keeps its place in the count and survives."""
    rows = [("x",), (5,), (5,)]
    assert surviving_rows(rows, [_marker(1, 2)]) == [("x",), (5,)]


def test_iter_surviving_is_lazy() -> None:
    """The generator form pulls rows one at a time (for files larger than memory)."""
    pulled: list[int] = []

    def rows() -> Any:
        for step in range(1000):
            pulled.append(step)
            yield (step,)

    first = next(iter_surviving(rows(), [_marker(500, 1000)]))
    assert first == (0,)
    assert pulled == [0]


def test_resume_markers_in_file_order() -> None:
    """``(metrics_rows, step)`` of the resume records only."""
    records = [{"event": "start"}, _marker(7, 12), {"event": "end"}, _marker(3, 20)]
    assert resume_markers(records) == [(12, 7), (20, 3)]


def test_best_of_rows_follows_the_best_json_rules() -> None:
    """Only keys given are tracked, in their mode; NaN never counts; the earlier tie wins."""
    rows = [
        ("0", "val", "loss", "0.5"),
        ("1", "val", "loss", "nan"),
        ("2", "val", "loss", "0.25"),
        ("3", "val", "loss", "0.25"),
        ("0", "val", "accuracy", "0.5"),
        ("1", "val", "accuracy", "0.75"),
        ("0", "train", "lr", "0.1"),
    ]
    assert best_of_rows(rows, {"val_loss": "min", "val_accuracy": "max"}) == {
        "val_loss": {"value": 0.25, "step": 2, "mode": "min"},
        "val_accuracy": {"value": 0.75, "step": 1, "mode": "max"},
    }
    assert best_of_rows([("0", "val", "loss", "nan")], {"val_loss": "min"}) == {}


def test_previous_end_reads_the_last_attempt() -> None:
    """The end record of the last attempt, or killed when it recorded none."""
    assert previous_end([]) is None
    start = {"event": "start", "attempt": 0}
    end = {"event": "end", "attempt": 0, "time": 5.0, "status": "interrupted", "signal": "SIGTERM"}
    assert previous_end([start, end]) == {
        "attempt": 0,
        "status": "interrupted",
        "signal": "SIGTERM",
    }
    again = {"event": "start", "attempt": 1}
    assert previous_end([start, end, again, _marker(3, 4)]) == {"attempt": 1, "status": "killed"}


def test_read_attempts_skips_a_cut_last_line(tmp_path: Path) -> None:
    """A last record cut by a kill is skipped; a missing file has no records."""
    path = tmp_path / "attempts.jsonl"
    assert read_attempts(path) == []
    path.write_text('{"event": "start", "attempt": 0}\n{"event": "resu', encoding="utf-8")
    assert read_attempts(path) == [{"event": "start", "attempt": 0}]


def test_file_names_per_rank() -> None:
    """Rank 0's history is attempts.jsonl and applies to metrics.csv; rank r's to its own file."""
    assert (attempts_name(0), metrics_name(0)) == ("attempts.jsonl", "metrics.csv")
    assert (attempts_name(3), metrics_name(3)) == ("attempts_rank3.jsonl", "metrics_rank3.csv")
