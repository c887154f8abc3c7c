"""expmate.sinks.base: append-only buffered files and the report-once failure policy."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from expmate.sinks import base
from expmate.sinks.base import AppendFile, report_failure
from tests.helpers import lines_of, make_logger, read_csv, read_events, wait_until


@pytest.fixture(autouse=True)
def _fresh_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no failure already reported."""
    monkeypatch.setattr(base, "_reported", set())


class _FullDisk:
    """Stands in for the os module in expmate.sinks.base: every write fails with ENOSPC."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, fd: int, data: Any) -> int:
        self.writes += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def test_header_is_written_to_a_new_file_only(tmp_path: Path) -> None:
    """The header goes into a new file, not into one that has content."""
    path = tmp_path / "f.csv"
    first = AppendFile(path, header="h\n")
    first.buffer.append("1\n")
    first.close()
    second = AppendFile(path, header="h\n")
    second.buffer.append("2\n")
    second.close()
    assert path.read_text(encoding="utf-8") == "h\n1\n2\n"


def test_cut_off_last_line_is_set_aside_before_appending(tmp_path: Path) -> None:
    """A last line without its newline moves to <file>.torn; the file keeps only whole lines."""
    path = tmp_path / "events.jsonl"
    path.write_text('{"a": 1}\n{"torn', encoding="utf-8")
    sink = AppendFile(path)
    sink.buffer.append('{"b": 2}\n')
    sink.close()
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"b": 2}\n'
    assert (tmp_path / "events.jsonl.torn").read_text(encoding="utf-8") == '{"torn\n'


def test_cut_off_header_is_written_again(tmp_path: Path) -> None:
    """A CSV whose only (cut) line was the header gets the whole header back."""
    path = tmp_path / "metrics.csv"
    path.write_text("step,spl", encoding="utf-8")
    sink = AppendFile(path, header="step,split\n")
    sink.buffer.append("0,train\n")
    sink.close()
    assert path.read_text(encoding="utf-8") == "step,split\n0,train\n"


def test_close_twice_is_harmless(tmp_path: Path) -> None:
    """A second close() does nothing; writing after close is dropped silently."""
    sink = AppendFile(tmp_path / "f")
    sink.buffer.append("x\n")
    sink.close()
    sink.close()
    sink.write(["y\n"])
    assert (tmp_path / "f").read_text(encoding="utf-8") == "x\n"


def test_discard_forgets_waiting_lines(tmp_path: Path) -> None:
    """discard() drops lines not yet written."""
    sink = AppendFile(tmp_path / "f")
    sink.buffer.append("parent line\n")
    sink.discard()
    sink.close()
    assert (tmp_path / "f").read_text(encoding="utf-8") == ""


def test_report_failure_writes_one_line_per_what(capfd: pytest.CaptureFixture[str]) -> None:
    """The first failure of a thing is reported; repeats are silent; another thing is reported."""
    report_failure("writing x", OSError(28, "No space left on device"))
    report_failure("writing x", OSError(28, "No space left on device"))
    report_failure("writing y", ValueError("bad"))
    assert capfd.readouterr().err == (
        "expmate: writing x failed (OSError: [Errno 28] No space left on device); "
        "training continues, further failures of it are not reported\n"
        "expmate: writing y failed (ValueError: bad); "
        "training continues, further failures of it are not reported\n"
    )


def test_full_disk_warns_once_and_training_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """ENOSPC on events.jsonl: one stderr line, no exception, later flushes not reported again."""
    logger, _ = make_logger(tmp_path, console_output=False)
    wait_until((tmp_path / "run.json").exists, 30)  # run.json's first write (a thread) is done
    full = _FullDisk()
    with monkeypatch.context() as patch:
        patch.setattr(base, "os", full)
        logger.info("lost 1")
        logger.flush()
        logger.info("lost 2")
        logger.log_metric(step=0, split="val", name="loss", value=0.5)
        logger.flush()
    assert full.writes >= 4
    err = capfd.readouterr().err
    events_path = tmp_path / "events.jsonl"
    assert f"expmate: writing {events_path} failed (OSError: [Errno {errno.ENOSPC}] " in err
    assert err.count(f"writing {events_path} failed") == 1
    assert all(line.startswith("expmate: writing ") for line in err.splitlines())
    logger.info("after the disk has space again")
    logger.close()
    assert [e["message"] for e in read_events(events_path)] == ["after the disk has space again"]
    assert capfd.readouterr().err == ""


def test_header_lost_to_a_full_disk_is_written_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the first write of metrics.csv fails, the next successful one still starts with the header."""
    logger, _ = make_logger(tmp_path, console_output=False)
    with monkeypatch.context() as patch:
        patch.setattr(base, "os", _FullDisk())
        logger.log_metric(step=0, split="val", name="loss", value=0.5)
        logger.flush()
    logger.log_metric(step=1, split="val", name="loss", value=0.4)
    logger.close()
    lines = lines_of(tmp_path / "metrics.csv")
    assert [line.rsplit(",", 1)[0] for line in lines] == ["step,split,name,value", "1,val,loss,0.4"]


class _FailingDisk:
    """Stands in for the os module in expmate.sinks.base: each write follows the next planned
    outcome (``"half"``: store half the bytes, then fail; ``"none"``: fail at once; ``"ok"``),
    and ftruncate fails too when ``truncate_fails``."""

    def __init__(self, *plan: str, truncate_fails: bool = False) -> None:
        self.plan = list(plan)
        self.truncate_fails = truncate_fails
        self._half_done = False

    def write(self, fd: int, data: Any) -> int:
        step = self.plan[0] if self.plan else "ok"
        if step == "ok":
            self.plan[:1] = []
            return os.write(fd, data)
        if step == "half" and not self._half_done:
            self._half_done = True
            return os.write(fd, bytes(data[: len(data) // 2]))
        self.plan[:1] = []
        self._half_done = False
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def ftruncate(self, fd: int, length: int) -> None:
        if self.truncate_fails:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.ftruncate(fd, length)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def test_write_that_fails_part_way_is_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that stores half its bytes and then fails is truncated away: whole lines only."""
    path = tmp_path / "events.jsonl"
    sink = AppendFile(path)
    sink.write(["before\n"])
    with monkeypatch.context() as patch:
        patch.setattr(base, "os", _FailingDisk("half"))
        assert sink.write(["abcdefgh\n", "ijkl\n"]) is False
    assert path.read_text(encoding="utf-8") == "before\n"
    assert sink.write(["next\n"]) is True
    sink.close()
    assert path.read_text(encoding="utf-8") == "before\nnext\n"


def test_cut_line_is_ended_even_when_the_next_write_fails_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the cut cannot be taken back, the newline that ends it is not lost with a write that
    fails completely: the next successful write still starts on a line of its own."""
    path = tmp_path / "events.jsonl"
    sink = AppendFile(path)
    with monkeypatch.context() as patch:
        patch.setattr(base, "os", _FailingDisk("half", "none", truncate_fails=True))
        sink.write(["abcdefgh\n"])
        sink.write(["lost\n"])
        sink.write(["next\n"])
    sink.close()
    assert path.read_text(encoding="utf-8") == "abcd\nnext\n"


def test_csv_header_survives_a_write_that_fails_part_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first write of a CSV cut inside its header is taken back; the header comes again."""
    path = tmp_path / "metrics.csv"
    sink = AppendFile(path, header="step,split\n", csv_records=True, lazy=True)
    with monkeypatch.context() as patch:
        patch.setattr(base, "os", _FailingDisk("half", "none"))
        sink.write(["0,train\n"])
        sink.write(["1,train\n"])
    assert path.read_text(encoding="utf-8") == ""
    sink.write(["2,train\n"])
    sink.close()
    assert path.read_text(encoding="utf-8") == "step,split\n2,train\n"


def test_failure_at_a_line_boundary_adds_no_empty_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the failure falls between two lines and cannot be taken back, nothing is added
    before the next line."""
    path = tmp_path / "events.jsonl"
    sink = AppendFile(path)
    with monkeypatch.context() as patch:
        patch.setattr(base, "os", _FailingDisk("half", truncate_fails=True))
        sink.write(["abc\n", "def\n"])
    sink.buffer.append("next\n")
    sink.close()
    assert path.read_text(encoding="utf-8") == "abc\nnext\n"


def test_lazy_file_appears_with_its_first_lines(tmp_path: Path) -> None:
    """A lazy file is not created until lines are written; closed unwritten, it never exists."""
    never = AppendFile(tmp_path / "never.csv", header="h\n", lazy=True)
    never.close()
    later = AppendFile(tmp_path / "later.csv", header="h\n", lazy=True)
    assert not (tmp_path / "later.csv").exists()
    later.buffer.append("1\n")
    later.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["later.csv"]
    assert (tmp_path / "later.csv").read_text(encoding="utf-8") == "h\n1\n"


def test_cut_csv_record_spanning_lines_is_set_aside_whole(tmp_path: Path) -> None:
    """Reopening a metrics.csv whose last record (a quoted name holding a newline) was cut after
    that newline sets the whole record aside: its open quote does not swallow later rows."""
    path = tmp_path / "metrics.csv"
    whole = 'step,split,name,value,wall_time\n0,val,"a\nb",1.0,2.000\n'
    path.write_text(whole + '1,val,"a\n', encoding="utf-8")
    logger, _ = make_logger(tmp_path, console_output=False)
    logger.log_metric(step=2, split="val", name="loss", value=0.5)
    logger.close()
    rows = read_csv(path)
    assert rows[:2] == [
        ["step", "split", "name", "value", "wall_time"],
        ["0", "val", "a\nb", "1.0", "2.000"],
    ]
    assert [row[:4] for row in rows[2:]] == [["2", "val", "loss", "0.5"]]
    assert (tmp_path / "metrics.csv.torn").read_text(encoding="utf-8") == '1,val,"a\n\n'


def test_replace_file_writes_the_text_with_usual_permissions(tmp_path: Path) -> None:
    """replace_file leaves exactly the new text, mode 0644, and no temporary file."""
    path = tmp_path / "best.json"
    path.write_text("old\n", encoding="utf-8")
    base.replace_file(path, "new\n")
    assert path.read_text(encoding="utf-8") == "new\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["best.json"]


class _FailingRename:
    """Stands in for the os module in expmate.sinks.base: the rename fails."""

    def replace(self, src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def test_replace_file_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed rename raises OSError, keeps the old content and removes the temporary file."""
    path = tmp_path / "best.json"
    path.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(base, "os", _FailingRename())
    with pytest.raises(OSError):
        base.replace_file(path, "new\n")
    assert path.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["best.json"]
