"""Reading human logs as records, from an offset, as they grow; merging ranks by time."""

from __future__ import annotations

import json
import time
from pathlib import Path

from expmate.log_merge import (
    GrowingFile,
    RankLog,
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


def test_growing_file_returns_whole_lines_only(tmp_path: Path) -> None:
    """A last line without its newline waits until it is complete."""
    path = tmp_path / "exp.log"
    path.write_bytes(f"{A}\n2025-01-23 14:30:23 - INFO - ha".encode())
    log = GrowingFile(path)
    assert log.read_lines() == f"{A}\n".encode()
    assert log.read_lines() == b""
    with open(path, "ab") as handle:
        handle.write(b"lf\ncontinued")
    assert log.read_lines() == b"2025-01-23 14:30:23 - INFO - half\n"
    with open(path, "ab") as handle:
        handle.write(b"\n")
    assert log.read_lines() == b"continued\n"


def test_growing_file_goes_on_after_a_cut_line_is_set_aside(tmp_path: Path) -> None:
    """Reopening a killed run moves its cut last line away and appends: reading goes on after the
    last whole line, and the cut fragment is never returned."""
    path = tmp_path / "exp.log"
    path.write_bytes(f"{A}\n2025-01-23 14:30:23 - INFO - cut sh".encode())
    log = GrowingFile(path)
    assert log.read_lines() == f"{A}\n".encode()
    path.write_bytes(f"{A}\n{B}\n{C}\n".encode())  # same inode: truncated, then longer lines
    assert log.read_lines() == f"{B}\n{C}\n".encode()


def test_growing_file_reads_a_replaced_or_truncated_file_from_its_start(tmp_path: Path) -> None:
    """A file cut below what was read, or replaced by another file, is read again from its start."""
    path = tmp_path / "exp.log"
    path.write_text(f"{A}\n{B}\n")
    log = GrowingFile(path)
    assert log.read_lines() == f"{A}\n{B}\n".encode()
    path.write_text(f"{C}\n")
    assert log.read_lines() == f"{C}\n".encode()
    replacement = tmp_path / "new.log"
    replacement.write_text(f"{A}\n{B}\n{C}\n")
    replacement.replace(path)
    assert log.read_lines() == f"{A}\n{B}\n{C}\n".encode()


def test_growing_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    """A file that appears later is read from its start once it is there."""
    path = tmp_path / "exp_rank1.log"
    log = GrowingFile(path)
    assert log.read_lines() == b""
    path.write_text(f"{A}\n")
    assert log.read_lines() == f"{A}\n".encode()


def _event(timestamp: float, level: str, message: str, **extra: object) -> str:
    return json.dumps({"timestamp": timestamp, "level": level, "message": message, **extra}) + "\n"


def test_rank_log_takes_the_fraction_of_a_second_from_the_events(tmp_path: Path) -> None:
    """Each record gets its event's fraction of a second; hidden (rate-limited) events are
    skipped; the seconds digit alone pairs them, so a reader in another time zone still pairs."""
    second = 1_700_000_000  # any second: the log's clock text is that of some other time zone
    seconds = time.strftime("%S", time.gmtime(second))
    clock = f"2025-01-23 09:00:{seconds}"
    (tmp_path / "exp_rank1.log").write_text(
        f"{clock} - INFO - one\n{clock} - WARNING - two\nlines\n{clock} - INFO - three\n"
    )
    (tmp_path / "events_rank1.jsonl").write_text(
        _event(second + 0.25, "INFO", "one")
        + _event(second + 0.375, "INFO", "hidden", rate_limited=True)
        + _event(second + 0.5, "WARNING", "two\nlines")
        + _event(second + 0.75, "INFO", "other")
    )
    records = RankLog(tmp_path, 1).read_new()
    assert [(r.clock, r.rank, r.lines, r.fraction) for r in records] == [
        (clock, 1, [f"{clock} - INFO - one"], 0.25),
        (clock, 1, [f"{clock} - WARNING - two", "lines"], 0.5),
        (clock, 1, [f"{clock} - INFO - three"], 0.5),  # no event: after the rank's last one
    ]


def test_ranks_interleave_within_a_second(tmp_path: Path) -> None:
    """Two ranks logging in the same second merge by their events' times."""
    second = 1_700_000_000
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
    for rank, (log, events) in enumerate([(["a", "c"], [0.1, 0.3]), (["b", "d"], [0.2, 0.4])]):
        suffix = "" if rank == 0 else f"_rank{rank}"
        (tmp_path / f"exp{suffix}.log").write_text("".join(f"{clock} - INFO - {m}\n" for m in log))
        (tmp_path / f"events{suffix}.jsonl").write_text(
            "".join(_event(second + f, "INFO", m) for m, f in zip(log, events, strict=True))
        )
    merged = merge_records([RankLog(tmp_path, 0).read_new(), RankLog(tmp_path, 1).read_new()])
    assert [(r.rank, r.lines[0][-1]) for r in merged] == [(0, "a"), (1, "b"), (0, "c"), (1, "d")]


def test_rank_log_starts_before_the_last_records(tmp_path: Path) -> None:
    """Started before the last N records, a rank's log still finds their events."""
    second = 1_700_000_000
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
    messages = [f"m{i}" for i in range(1000)]
    (tmp_path / "exp.log").write_text("".join(f"{clock} - INFO - {m}\n" for m in messages))
    (tmp_path / "events.jsonl").write_text(
        "".join(_event(second + i / 1024, "INFO", m) for i, m in enumerate(messages))
        + _event(second + 1023 / 1024, "INFO", "not flushed to exp.log yet")
    )
    records = RankLog(tmp_path, 0, last=2).read_new()
    assert [(r.lines, r.fraction) for r in records] == [
        ([f"{clock} - INFO - m998"], 998 / 1024),
        ([f"{clock} - INFO - m999"], 999 / 1024),
    ]


def test_offset_of_last_events_skips_rate_limited_lines(tmp_path: Path) -> None:
    """In an events file, lines hidden by log_every do not count."""
    path = tmp_path / "events.jsonl"
    first = _event(1.0, "INFO", "a")
    path.write_text(first + _event(2.0, "INFO", "b") + _event(3.0, "INFO", "h", rate_limited=True))
    assert offset_of_last(path, 1, records=False) == len(first)


def test_rank_log_streams_a_long_log_block_by_block(tmp_path: Path) -> None:
    """A log and events file many read blocks long: every record gets its own event's time,
    with hidden events in between, and every line comes out once, in order."""
    second = 1_700_000_000
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
    count = 5_000
    (tmp_path / "exp.log").write_text(
        "".join(f"{clock} - INFO - message {i}\n" for i in range(count))
    )
    (tmp_path / "events.jsonl").write_text(
        "".join(
            _event(second + i / 32768, "INFO", f"message {i}")
            + _event(second, "INFO", "hidden", rate_limited=True)
            for i in range(count)
        )
    )
    records = list(RankLog(tmp_path, 0).stream())
    assert [(r.lines, r.fraction) for r in records] == [
        ([f"{clock} - INFO - message {i}"], i / 32768) for i in range(count)
    ]
