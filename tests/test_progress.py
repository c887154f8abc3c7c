"""logger.progress: a tqdm bar on a real terminal, log lines elsewhere, nothing on other ranks."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from expmate import ExperimentLogger
from expmate import progress as progress_module
from tests.helpers import make_logger, read_events

LOSSES = [0.9, 0.7, 0.5, 0.4, 0.3]


def messages(text: str) -> list[str]:
    """The messages of console or exp.log lines (``date time - LEVEL - message``)."""
    return [line.split(" - ", 2)[2] for line in text.splitlines()]


def fake_clock(values: list[float]) -> Iterator[float]:
    yield from values


def test_lines_without_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a terminal: one INFO line when ``seconds`` have passed and one at the end, with rate,
    ETA and the latest metric values, in the console, exp.log and events.jsonl."""
    clock = fake_clock([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 50.0])  # each item takes 10 s
    monkeypatch.setattr(progress_module, "_now", lambda: next(clock))
    logger, console = make_logger(tmp_path)
    for i in logger.progress(range(5), desc="train", postfix=["train/loss"], seconds=25):
        logger.log_metric(i, "train", "loss", LOSSES[i])
    logger.close()
    first = "Progress [train]: 3/5 (60%), 0.1 it/s, ETA 00:20, elapsed 00:30, train/loss=0.5"
    last = "Progress [train]: 5/5 (100%), 0.1 it/s, elapsed 00:50, train/loss=0.3"
    assert messages(console.getvalue()) == [first, last]
    assert messages((tmp_path / "exp.log").read_text()) == [
        first,
        last,
    ]
    events = read_events(tmp_path / "events.jsonl")
    fields = [{k: e[k] for k in e if k not in ("timestamp", "run_id", "message")} for e in events]
    assert fields == [
        {
            "level": "INFO",
            "rank": 0,
            "progress": "train",
            "n": 3,
            "total": 5,
            "rate": 3 / 30,
            "eta": 2 / (3 / 30),
            "elapsed_s": 30.0,
            "train/loss": 0.5,
        },
        {
            "level": "INFO",
            "rank": 0,
            "progress": "train",
            "n": 5,
            "total": 5,
            "rate": 5 / 50,
            "elapsed_s": 50.0,
            "train/loss": 0.3,
        },
    ]


def test_lines_without_total_or_desc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An iterator of unknown length: counts only; a loop left early still gets its last line
    (counting the items finished: the one the loop broke out of is not)."""
    clock = fake_clock([0.0, 1.0, 2.0])
    monkeypatch.setattr(progress_module, "_now", lambda: next(clock))
    logger, console = make_logger(tmp_path)
    for i in logger.progress(iter(range(100)), seconds=5):
        if i == 1:
            break
    logger.close()
    assert messages(console.getvalue()) == ["Progress: 1, 0.5 it/s, elapsed 00:02"]


def test_other_ranks_iterate_plainly(tmp_path: Path) -> None:
    """On a rank other than 0 the iterable comes back as it is, and nothing is logged."""
    data = [1, 2, 3]
    logger = ExperimentLogger(run_dir=tmp_path, rank=1, console_output=False)
    assert logger.progress(data, desc="x", postfix=["train/loss"], seconds=1e-9) is data
    logger.close()
    assert (tmp_path / "exp_rank1.log").read_text() == ""


class Terminal:
    """A pseudo-terminal (100 columns; 0: no size reported) whose writing end is a text stream."""

    def __init__(self, columns: int = 100) -> None:
        self.master, slave = pty.openpty()
        size = (24, columns) if columns else (0, 0)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        self.stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115

    def output(self) -> str:
        self.stream.flush()
        chunks = []
        while select.select([self.master], [], [], 0.2)[0]:
            chunks.append(os.read(self.master, 65536))
        self.stream.close()
        os.close(self.master)
        return b"".join(chunks).decode("utf-8")


def test_bar_on_a_terminal(tmp_path: Path) -> None:
    """A terminal: tqdm's bar with the count, steps/s and the metric, console lines above it,
    and none of it in exp.log or events.jsonl."""
    term = Terminal()
    logger = ExperimentLogger(run_dir=tmp_path, console_stream=term.stream, color=False)
    for i in logger.progress(range(3), desc="train", postfix=["train/loss"]):
        logger.log_metric(i, "train", "loss", LOSSES[i])
        if i == 1:
            logger.info("halfway")
    logger.close()
    output = term.output()
    segments = output.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    final = [s for s in segments if s.startswith("train: 100%|")]
    assert final and " 3/3 [" in final[-1] and "it/s, train/loss=0.5]" in final[-1]
    assert messages("\n".join(s for s in segments if " - INFO - " in s)) == ["halfway"]
    assert messages((tmp_path / "exp.log").read_text()) == ["halfway"]
    assert [e["message"] for e in read_events(tmp_path / "events.jsonl")] == ["halfway"]


def test_bar_on_a_terminal_without_a_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.stdout on a terminal that reports no size (0 x 0) still gets a bar, 80 columns wide
    (tqdm alone draws nothing there)."""
    term = Terminal(columns=0)
    monkeypatch.setattr(sys, "stdout", term.stream)
    logger = ExperimentLogger(run_dir=tmp_path, color=False)
    list(logger.progress(range(4), desc="eval"))
    logger.close()
    final = term.output().replace("\r\n", "\r").split("\r")[-2]
    assert final.startswith("eval: 100%|") and " 4/4 [" in final and len(final) == 80


def test_terminal_without_tqdm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tqdm not installed: the line-by-line form, even on a terminal."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    term = Terminal()
    logger = ExperimentLogger(run_dir=tmp_path, console_stream=term.stream, color=False)
    assert list(logger.progress(range(2), desc="eval")) == [0, 1]
    logger.close()
    lines = messages((tmp_path / "exp.log").read_text())
    assert len(lines) == 1 and lines[0].startswith("Progress [eval]: 2/2 (100%), ")
    assert "|" not in term.output()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"postfix": ["loss"]},
            ValueError,
            r"postfix entry 'loss' is not of the form 'split/name'",
        ),
        ({"postfix": ["/loss"]}, ValueError, r"postfix entry '/loss'"),
        ({"postfix": [3]}, TypeError, r"postfix entries must be 'split/name' strings, not 3"),
        ({"total": -1}, ValueError, r"total must be a non-negative integer or None, not -1"),
        ({"total": 2.5}, ValueError, r"not 2.5"),
        ({"desc": 7}, TypeError, r"desc must be a string or None, not 7"),
        ({"seconds": 0}, ValueError, r"seconds must be a positive number, not 0"),
    ],
)
def test_bad_arguments(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    """Bad arguments raise at the call, naming the value; nothing is logged."""
    logger, console = make_logger(tmp_path)
    with pytest.raises(error, match=match):
        logger.progress([1], **kwargs)  # type: ignore[arg-type]
    logger.close()
    assert console.getvalue() == "" and (tmp_path / "exp.log").read_text() == ""


def test_clock_format() -> None:
    """Durations as MM:SS, or H:MM:SS from an hour on."""
    assert [progress_module.clock(s) for s in (0, 59.9, 83.4, 3725)] == [
        "00:00",
        "00:59",
        "01:23",
        "1:02:05",
    ]


def test_string_stream_is_not_a_terminal(tmp_path: Path) -> None:
    """A StringIO console is no terminal, whatever FORCE_COLOR says about colors."""
    stream = io.StringIO()
    logger = ExperimentLogger(run_dir=tmp_path, console_stream=stream, color=True)
    list(logger.progress(range(2)))
    logger.close()
    assert "|" not in stream.getvalue() and "Progress: 2, " not in stream.getvalue()
    assert "Progress: 2/2 (100%), " in stream.getvalue()
