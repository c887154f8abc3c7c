"""Reading human logs as records, from an offset, as they grow; merging ranks by time."""

from __future__ import annotations

from pathlib import Path

from expmate.log_merge import (
    LogFile,
    Record,
    merge_records,
    offset_of_last,
    parse_records,
    rank_logs,
)

A = "2025-01-23 14:30:22 - INFO - a"
B = "2025-01-23 14:30:23 - WARNING - b"
C = "2025-01-23 14:30:24 - INFO - c"


def _lines(records: list[Record]) -> list[tuple[str, int, list[str]]]:
    return [(r.clock, r.rank, r.lines) for r in records]


def test_parse_records_joins_continuation_lines() -> None:
    """A line without a time continues the record before it; leading ones get the given clock."""
    data = f"tail of before\n{A}\nsecond line\n\n{B}\n".encode()
    assert _lines(parse_records(data, rank=2, clock="2025-01-23 14:30:21")) == [
        ("2025-01-23 14:30:21", 2, ["tail of before"]),
        ("2025-01-23 14:30:22", 2, [A, "second line", ""]),
        ("2025-01-23 14:30:23", 2, [B]),
    ]


def test_merge_orders_by_time_then_rank_and_keeps_each_files_order() -> None:
    """Records merge by their second; within a second rank 0 first; a file's order is kept even
    where its clock steps back."""
    rank0 = parse_records(f"{A}\n{C}\n{A}\n".encode(), rank=0)
    rank1 = parse_records(f"{A}\n{B}\n".encode(), rank=1)
    assert [(r.rank, r.lines[0]) for r in merge_records([rank0, rank1])] == [
        (0, A),
        (1, A),
        (1, B),
        (0, C),
        (0, A),
    ]


def test_rank_logs(tmp_path: Path) -> None:
    """exp.log is rank 0, exp_rank{r}.log rank r; other files are ignored; sorted by rank."""
    for name in (
        "exp_rank10.log",
        "exp.log",
        "exp_rank2.log",
        "exp_rank2.log.torn",
        "exp_rankx.log",
    ):
        (tmp_path / name).write_text("")
    assert rank_logs(tmp_path) == {
        0: tmp_path / "exp.log",
        2: tmp_path / "exp_rank2.log",
        10: tmp_path / "exp_rank10.log",
    }


def test_offset_of_last_counts_records_not_lines(tmp_path: Path) -> None:
    """The last N records start where expected; an unfinished last line is not one of them."""
    path = tmp_path / "exp.log"
    head = f"{A}\nmore\n"
    path.write_text(f"{head}{B}\n{C}\n2025-01-23 14:30:25 - INFO - unfinish")
    assert offset_of_last(path, 2) == len(head)
    assert offset_of_last(path, 3) == 0
    assert offset_of_last(path, 99) == 0
    assert offset_of_last(path, 0) == path.stat().st_size


def test_offset_of_last_reads_across_blocks(tmp_path: Path) -> None:
    """A log longer than a read block: the offset of the last 3 records of 20,000."""
    path = tmp_path / "exp.log"
    lines = [f"2025-01-23 14:30:22 - INFO - message {i}\n" for i in range(20_000)]
    path.write_text("".join(lines))
    offset = offset_of_last(path, 3)
    assert path.read_bytes()[offset:].decode() == "".join(lines[-3:])


def test_log_file_returns_whole_lines_only(tmp_path: Path) -> None:
    """A last line without its newline waits until it is complete."""
    path = tmp_path / "exp.log"
    path.write_bytes(f"{A}\n2025-01-23 14:30:23 - INFO - ha".encode())
    log = LogFile(path, 0)
    assert _lines(log.read_new()) == [("2025-01-23 14:30:22", 0, [A])]
    assert log.read_new() == []
    with open(path, "ab") as handle:
        handle.write(b"lf\ncontinued")
    assert _lines(log.read_new()) == [
        ("2025-01-23 14:30:23", 0, ["2025-01-23 14:30:23 - INFO - half"])
    ]
    with open(path, "ab") as handle:
        handle.write(b"\n")
    assert _lines(log.read_new()) == [("2025-01-23 14:30:23", 0, ["continued"])]


def test_log_file_goes_on_after_a_cut_line_is_set_aside(tmp_path: Path) -> None:
    """Reopening a killed run moves its cut last line away and appends: reading goes on after the
    last whole line, and the cut fragment is never shown."""
    path = tmp_path / "exp.log"
    path.write_bytes(f"{A}\n2025-01-23 14:30:23 - INFO - cut sh".encode())
    log = LogFile(path, 0)
    assert len(log.read_new()) == 1
    path.write_bytes(f"{A}\n{B}\n{C}\n".encode())  # same inode: truncated, then longer lines
    assert [r.lines for r in log.read_new()] == [[B], [C]]


def test_log_file_reads_a_replaced_or_truncated_file_from_its_start(tmp_path: Path) -> None:
    """A file cut below what was read, or replaced by another file, is read again from its start."""
    path = tmp_path / "exp.log"
    path.write_text(f"{A}\n{B}\n")
    log = LogFile(path, 0)
    assert len(log.read_new()) == 2
    path.write_text(f"{C}\n")
    assert [r.lines for r in log.read_new()] == [[C]]
    replacement = tmp_path / "new.log"
    replacement.write_text(f"{A}\n{B}\n{C}\n")
    replacement.replace(path)
    assert [r.lines for r in log.read_new()] == [[A], [B], [C]]


def test_log_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    """A log that appears later is read from its start once it is there."""
    path = tmp_path / "exp_rank1.log"
    log = LogFile(path, 1)
    assert log.read_new() == []
    path.write_text(f"{A}\n")
    assert _lines(log.read_new()) == [("2025-01-23 14:30:22", 1, [A])]
