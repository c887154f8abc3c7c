"""expmate.csv_records: CSV records that span lines, cut records, counting and reading rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from expmate import csv_records
from expmate.csv_records import count_rows, read_rows, whole_end

HEADER = "step,split,name,value,wall_time\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "metrics.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    ("text", "whole"),
    [
        (HEADER + "0,val,loss,1.0,1.000\n", HEADER + "0,val,loss,1.0,1.000\n"),
        (HEADER + "0,val,loss,1.0,1.0", HEADER),
        (HEADER + '0,val,"a\nb",1.0,1.000\n', HEADER + '0,val,"a\nb",1.0,1.000\n'),
        (HEADER + '0,val,"a\n', HEADER),  # cut right after the newline inside the quotes
        (
            HEADER + '0,val,"say ""hi""\n,x",1.0,1.000\n1,v',
            HEADER + '0,val,"say ""hi""\n,x",1.0,1.000\n',
        ),
        ("step,spl", ""),
        ("", ""),
    ],
    ids=[
        "whole",
        "cut-row",
        "quoted-newline",
        "cut-in-quotes",
        "doubled-quotes",
        "cut-header",
        "empty",
    ],
)
def test_whole_end_is_the_last_record_boundary(tmp_path: Path, text: str, whole: str) -> None:
    """The prefix of whole records ends at the last newline outside quotes."""
    path = _write(tmp_path, text)
    assert whole_end(path) == len(whole.encode("utf-8"))


def test_whole_end_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Quotes that open in one read chunk and close in the next are followed across them."""
    monkeypatch.setattr(csv_records, "_CHUNK", 7)
    text = HEADER + '0,val,"x\ny\nz",1.0,1.000\n1,val,"open\n'
    path = _write(tmp_path, text)
    assert whole_end(path) == len(HEADER + '0,val,"x\ny\nz",1.0,1.000\n')
    assert whole_end(path, size=len(HEADER) + 3) == len(HEADER)


def test_read_and_count_rows_leave_out_a_cut_record(tmp_path: Path) -> None:
    """Rows are the whole records after the header, quoted newlines inside them."""
    path = _write(tmp_path, HEADER + '0,val,"a\nb",1.0,1.000\n1,val,loss,0.5,2.000\n2,val,"c\n')
    assert list(read_rows(path)) == [
        ["0", "val", "a\nb", "1.0", "1.000"],
        ["1", "val", "loss", "0.5", "2.000"],
    ]
    assert count_rows(path) == 2


def test_count_rows_without_quotes_counts_lines(tmp_path: Path) -> None:
    """An unquoted file's rows are its lines after the header; a missing file has none."""
    path = _write(tmp_path, HEADER + "0,val,loss,1.0,1.000\n1,val,loss,0.5,2.000\n")
    assert count_rows(path) == 2
    assert count_rows(tmp_path / "missing.csv") == 0
    assert list(read_rows(tmp_path / "missing.csv")) == []
