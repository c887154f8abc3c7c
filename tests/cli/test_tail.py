"""``expmate tail``: logs of a real run, ranks of a torchrun job merged by time, -f, bad input."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from expmate import ExperimentLogger, cli
from tests.ddp_launch import torchrun, worker_env
from tests.helpers import lines_of

WORKER = Path(__file__).resolve().parent / "workers" / "tail_worker.py"


def _tail(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert cli.main(["tail", *args]) == 0
    return capsys.readouterr().out.splitlines()


def _one_process_run(run_dir: Path) -> list[str]:
    logger = ExperimentLogger(run_dir=run_dir, console_output=False)
    for i in range(12):
        logger.info(f"message {i}")
    logger.warning("two\nlines")
    logger.close()
    return lines_of(run_dir / "exp.log")


def test_tail_of_a_one_process_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The last 10 messages by default, -n N and -n all, each line with its rank; --rank 0
    without the prefix; a message of two lines counts as one."""
    lines = _one_process_run(tmp_path)
    assert len(lines) == 14 and lines[-1] == "lines"
    prefixed = [f"[r0] {line}" for line in lines]
    assert _tail(capsys, str(tmp_path)) == prefixed[-11:]
    assert _tail(capsys, str(tmp_path), "-n", "2") == prefixed[-3:]
    assert _tail(capsys, str(tmp_path), "-n", "all") == prefixed
    assert _tail(capsys, str(tmp_path), "-n", "0") == []
    assert _tail(capsys, str(tmp_path), "--rank", "0", "-n", "1") == lines[-2:]


@pytest.mark.ddp
def test_tail_merges_the_ranks_of_a_torchrun_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two ranks' logs interleave by time with a rank prefix; --rank 1 shows one rank alone."""
    result = torchrun(WORKER, str(tmp_path), nproc=2, timeout=120)
    assert (result.returncode, result.timed_out) == (0, False), result.output
    rank0, rank1 = lines_of(tmp_path / "exp.log"), lines_of(tmp_path / "exp_rank1.log")
    assert [line[20:] for line in rank0] == [
        "- INFO - first, from rank 0",
        "- INFO - third, from rank 0",
        "- WARNING - fourth, from rank 0",
    ]
    assert [line[20:] for line in rank1[::2]] == [
        "- INFO - second, from rank 1",
        "- INFO - fifth, from rank 1",
    ]
    assert rank1[1] == "its second line"
    assert _tail(capsys, str(tmp_path), "-n", "all") == [
        f"[r0] {rank0[0]}",
        f"[r1] {rank1[0]}",
        f"[r1] {rank1[1]}",
        f"[r0] {rank0[1]}",
        f"[r0] {rank0[2]}",
        f"[r1] {rank1[2]}",
    ]
    assert _tail(capsys, str(tmp_path), "-n", "2") == [f"[r0] {rank0[2]}", f"[r1] {rank1[2]}"]
    assert _tail(capsys, str(tmp_path), "--rank", "1") == rank1


class _Lines:
    """The stdout lines of a process, read by a thread, waited for with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.queue.put(line.rstrip("\n"))

    def next(self) -> str:
        return self.queue.get(timeout=60)

    def pending(self) -> list[str]:
        time.sleep(0.6)  # more than two polls of `tail -f`
        return [self.queue.get() for _ in range(self.queue.qsize())]


def test_follow_new_lines_new_ranks_cut_lines_and_ctrl_c(tmp_path: Path) -> None:
    """-f prints lines as they are flushed, a rank whose log appears later, a cut last line only
    once it is whole; Ctrl-C ends it with status 130 and no traceback."""
    rank0 = ExperimentLogger(run_dir=tmp_path, console_output=False)
    rank0.info("before tail")
    rank0.flush()
    proc = subprocess.Popen(
        [sys.executable, "-m", "expmate", "tail", "-f", str(tmp_path)],
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = _Lines(proc)
        assert out.next() == f"[r0] {lines_of(tmp_path / 'exp.log')[0]}"
        rank0.info("while tailing")
        rank0.flush()
        assert out.next().endswith(" - INFO - while tailing")
        rank0.close()
        with open(tmp_path / "exp.log", "a", encoding="utf-8") as log:
            log.write("2025-01-23 14:30:22 - INFO - written in two ")
        rank1 = ExperimentLogger(run_dir=tmp_path, rank=1)
        rank1.info("rank 1 appears")
        rank1.close()
        assert out.next() == f"[r1] {lines_of(tmp_path / 'exp_rank1.log')[0]}"
        assert out.pending() == []
        with open(tmp_path / "exp.log", "a", encoding="utf-8") as log:
            log.write("parts\n")
        assert out.next() == "[r0] 2025-01-23 14:30:22 - INFO - written in two parts"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{run}/missing"], 1, "expmate tail: no run directory at '{run}/missing'"),
        (["{run}"], 1, "expmate tail: {run} has no exp.log (nothing logged yet, or the run logs to a log_handler)"),
        (["{run}/logged", "--rank", "3"], 1, "expmate tail: {run}/logged has no exp_rank3.log (ranks with a log: 0)"),
    ],
)  # fmt: skip
def test_tail_bad_input(
    args: list[str], code: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing directory, a run without a log, a rank without one: one line, exit 1."""
    (tmp_path / "logged").mkdir()
    (tmp_path / "logged" / "exp.log").write_text("")
    assert cli.main(["tail", *(a.format(run=tmp_path) for a in args)]) == code
    assert capsys.readouterr().err == message.format(run=tmp_path) + "\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rank", "-1"], "argument --rank: a rank is a number 0 or more, not '-1'"),
        (["-n", "ten"], "argument -n/--lines: expected a number of lines or 'all', not 'ten'"),
    ],
)
def test_tail_usage_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad rank or line count is a usage error: exit 2, argparse's one-line reason."""
    assert cli.main(["tail", str(tmp_path), *args]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"expmate tail: error: {message}"
