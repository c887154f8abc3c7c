"""What a logging process leaves on disk when it is killed, exits without close() or forks.

Every test runs tests/crash_workers/log_loop.py in its own process session (the whole group is
killed on timeout) and reads the run directory back with the csv and json modules.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import queue
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from expmate import ExperimentLogger
from tests.helpers import start_worker

WORKER = Path(__file__).resolve().parent / "crash_workers" / "log_loop.py"
LOG_LINE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} - (?:DEBUG|INFO|WARNING|ERROR) - (.*)")
STEP_MESSAGE = re.compile(r"step (\d+)")
TIMEOUT = 20.0
PAGE_SIZE = 4096


class Worker:
    """One worker process in its own session; its stdout lines arrive in a queue."""

    def __init__(self, mode: str, run_dir: Path, *options: str) -> None:
        self.proc = start_worker(WORKER, mode, str(run_dir), *options)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill_group()
        self.proc.wait()
        self._reader.join(5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def stderr(self) -> str:
        """What the worker wrote to stderr (only once it has exited)."""
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else "(still running)"

    def wait_line(self, wanted: Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        """The first stdout line for which ``wanted`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                self.kill_group()
                self.proc.wait()
                pytest.fail(f"worker printed no expected line in {timeout}s: {self.stderr()}")
            if line is None:
                self.proc.wait()
                pytest.fail(f"worker exited ({self.proc.returncode}): {self.stderr()}")
            if wanted(line):
                return line

    def latest_line(self, default: str) -> str:
        """The newest stdout line received so far (``default`` if none is waiting)."""
        line = default
        with contextlib.suppress(queue.Empty):
            while True:
                got = self.lines.get_nowait()
                if got is not None:
                    line = got
        return line

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """The exit status; the whole group is killed and the test fails on timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            self.proc.wait()
            pytest.fail(f"worker still running after {timeout}s: {self.stderr()}")


def run_worker(mode: str, run_dir: Path, *options: str) -> int:
    """Run a worker to its end and return its exit status."""
    with Worker(mode, run_dir, *options) as worker:
        status = worker.wait()
        assert status == 0, worker.stderr()
        return status


@dataclass
class RunFiles:
    """A run directory read back and checked line by line."""

    csv_steps: list[int]
    log_messages: list[str]
    jsonl_messages: list[str]
    best: dict[str, Any] | None
    cut: list[str]  # files whose last line a SIGKILL cut at a page boundary


def _lines(path: Path, cut: list[str] | None = None) -> list[str]:
    """The complete lines of ``path``; a non-empty file must end with a newline.

    With ``cut`` (a process was SIGKILLed), one exception is allowed: Linux stops a write(2) to a
    regular file at a page boundary when SIGKILL arrives during it, so the last line may be cut
    there and only there. It is dropped, and the file's name is added to ``cut``.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        assert cut is not None, f"{path.name} ends with a torn line: {data[-80:]!r}"
        assert len(data) % PAGE_SIZE == 0, f"{path.name} torn off a page boundary: {data[-80:]!r}"
        data = data[: data.rfind(b"\n") + 1]
        cut.append(path.name)
    return data.decode("utf-8").splitlines()


def _csv_steps(path: Path, cut: list[str] | None) -> list[int]:
    rows = list(csv.reader(_lines(path, cut)))
    if not rows:
        return []
    assert rows[0] == ["step", "split", "name", "value", "wall_time"]
    steps = []
    for row in rows[1:]:
        assert len(row) == 5, f"torn row in metrics.csv: {row!r}"
        step = int(row[0])
        assert row[1:3] == ["train", "loss"], row
        assert float(row[3]) == 1.0 / (step + 1), row
        float(row[4])
        steps.append(step)
    return steps


def _log_messages(path: Path, cut: list[str] | None) -> list[str]:
    messages = []
    for line in _lines(path, cut):
        match = LOG_LINE.fullmatch(line)
        assert match is not None, f"torn or malformed line in exp.log: {line!r}"
        messages.append(match.group(1))
    return messages


def _jsonl_messages(path: Path, cut: list[str] | None) -> list[str]:
    return [json.loads(line)["message"] for line in _lines(path, cut)]


def read_run(run_dir: Path, *, killed: bool = False) -> RunFiles:
    """Read every file of ``run_dir``, failing on any torn or unparseable line (but for the
    page-boundary cut that a SIGKILL during a write can leave, when ``killed``)."""
    cut: list[str] | None = [] if killed else None
    best_path = run_dir / "best.json"
    best = json.loads(best_path.read_text(encoding="utf-8")) if best_path.exists() else None
    return RunFiles(
        csv_steps=_csv_steps(run_dir / "metrics.csv", cut),
        log_messages=_log_messages(run_dir / "exp.log", cut),
        jsonl_messages=_jsonl_messages(run_dir / "events.jsonl", cut),
        best=best,
        cut=cut or [],
    )


def step_messages(messages: list[str]) -> list[int]:
    """The step numbers of the ``step N`` messages, in file order."""
    return [int(m.group(1)) for m in map(STEP_MESSAGE.fullmatch, messages) if m]


def assert_whole_prefix(run: RunFiles) -> int:
    """Every file holds steps 0..n-1 exactly once, in order (a gap or a repeat fails).

    Returns:
        The number of steps in metrics.csv.
    """
    for what, steps in (
        ("metrics.csv", run.csv_steps),
        ("exp.log", step_messages(run.log_messages)),
        ("events.jsonl", step_messages(run.jsonl_messages)),
    ):
        assert steps == list(range(len(steps))), f"{what} steps are not 0..n-1: {steps[-5:]}"
    return len(run.csv_steps)


def assert_best_parses(run: RunFiles) -> None:
    """``best.json`` (if written yet) holds a loss whose value matches its step."""
    if run.best is None:
        return
    assert set(run.best) == {"train_loss"}
    entry = run.best["train_loss"]
    assert entry["mode"] == "min"
    assert entry["value"] == 1.0 / (entry["step"] + 1)


# ---------------------------------------------------------------------------------- SIGKILL


def _killed_at_random(run_dir: Path, delay: float, pace: float) -> RunFiles:
    options = ("--flush-interval", "0.05", "--ready-after", "0.2", "--pace", str(pace))
    with Worker("loop", run_dir, *options) as worker:
        worker.wait_line(lambda line: line == "ready")
        time.sleep(delay)
        worker.signal(signal.SIGKILL)
        assert worker.wait() == -signal.SIGKILL
    return read_run(run_dir, killed=True)


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory: pytest.TempPathFactory) -> list[RunFiles]:
    """Ten workers SIGKILLed 0-0.3 s after they got going: five log in a tight loop (flushed by
    the bound on waiting lines), five pause briefly every 10 steps (flushed by the interval)."""
    rng = random.Random(20250123)
    base = tmp_path_factory.mktemp("killed")
    dirs = [base / f"run{i}" for i in range(10)]
    delays = [rng.uniform(0.0, 0.3) for _ in dirs]
    paces = [0.0] * 5 + [0.0002] * 5
    with ThreadPoolExecutor(max_workers=5) as pool:
        return list(pool.map(_killed_at_random, dirs, delays, paces))


def test_sigkill_leaves_whole_lines_and_no_gaps(killed_runs: list[RunFiles]) -> None:
    """After SIGKILL every line parses and steps run 0..n-1 without gap or repeat in every file.

    The one thing the kernel allows (and _lines checks narrowly) is a last line cut at a page
    boundary by a kill during write(2); a reopened file starts its next line on a new line. That
    best.json never runs ahead of metrics.csv is pinned without timing in test_flushing.py.
    """
    for run in killed_runs:
        assert assert_whole_prefix(run) > 0  # it ran for 4+ flush intervals before the kill
        assert_best_parses(run)


def test_sigkill_after_a_stall_loses_nothing(tmp_path: Path) -> None:
    """Rows logged 3 flush intervals before a SIGKILL were written by the background flusher."""
    options = ("--steps", "500", "--flush-interval", "0.1", "--stall", "0.3")
    with Worker("stall", tmp_path, *options) as worker:
        worker.wait_line(lambda line: line == "stalled")
        worker.signal(signal.SIGKILL)
        assert worker.wait() == -signal.SIGKILL
    run = read_run(tmp_path)
    assert assert_whole_prefix(run) == 500
    assert step_messages(run.log_messages) == list(range(500))
    assert step_messages(run.jsonl_messages) == list(range(500))
    assert run.best == {"train_loss": {"value": 1 / 500, "step": 499, "mode": "min"}}


def test_reopening_after_a_cut_line_sets_it_aside(tmp_path: Path) -> None:
    """A line cut short by a kill moves to <file>.torn when the run is reopened: the files hold
    only whole lines again and the fragment is kept."""
    stamp = "2025-01-23 14:30:22"
    (tmp_path / "exp.log").write_text(f"{stamp} - INFO - step 0\n{stamp} - IN", encoding="utf-8")
    (tmp_path / "events.jsonl").write_text('{"message": "step 0"}\n{"mess', encoding="utf-8")
    (tmp_path / "metrics.csv").write_text(
        "step,split,name,value,wall_time\n0,train,loss,1.0,1.0\n1,tra", encoding="utf-8"
    )
    with ExperimentLogger(tmp_path, console_output=False) as logger:
        logger.log_metric(step=1, split="train", name="loss", value=0.5)
        logger.info("step 1")
    log = (tmp_path / "exp.log").read_text(encoding="utf-8").splitlines()
    assert log[0] == f"{stamp} - INFO - step 0"
    assert all(LOG_LINE.fullmatch(line) for line in log[1:])
    assert log[-1].endswith(" - INFO - step 1")
    events = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["message"] for line in events][0::2] == ["step 0", "step 1"]
    rows = list(csv.reader((tmp_path / "metrics.csv").read_text(encoding="utf-8").splitlines()))
    assert rows[1:] == [
        ["0", "train", "loss", "1.0", "1.0"],
        ["1", "train", "loss", "0.5", rows[2][4]],
    ]
    torn = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.torn")}
    assert torn == {
        "exp.log.torn": f"{stamp} - IN\n",
        "events.jsonl.torn": '{"mess\n',
        "metrics.csv.torn": "1,tra\n",
    }


# ---------------------------------------------------------------------------------- exit, SIGTERM


def test_exit_without_close_writes_everything(tmp_path: Path) -> None:
    """A logger dropped without close() (a local of a function) has every line written at exit."""
    run_worker("exit", tmp_path, "--steps", "300", "--flush-interval", "1000")
    run = read_run(tmp_path)
    assert assert_whole_prefix(run) == 300
    assert step_messages(run.log_messages) == list(range(300))
    assert step_messages(run.jsonl_messages) == list(range(300))
    assert run.best == {"train_loss": {"value": 1 / 300, "step": 299, "mode": "min"}}


def _terminated(
    run_dir: Path, after: int, delay: float, *options: str
) -> tuple[int, int, RunFiles]:
    """SIGTERM a logging worker once it reported step ``after`` and ``delay`` seconds passed.

    Returns:
        Its exit status, the last step it reported logged before the signal, and its files.
    """
    options = ("--flush-interval", "1000", "--ready-after", "0", "--report-every", "10", *options)
    with Worker("loop", run_dir, *options) as worker:
        line = worker.wait_line(lambda line: line.startswith("logged ") and int(line[7:]) >= after)
        time.sleep(delay)
        reported = int(worker.latest_line(default=line)[7:])
        worker.signal(signal.SIGTERM)
        status = worker.wait()
    return status, reported, read_run(run_dir)


@pytest.mark.parametrize(
    ("after", "pace"),
    [(150, "0.001"), (3000, "0")],
    ids=["before-any-flush", "tight-loop"],
)
def test_sigterm_flushes_then_dies_of_sigterm(tmp_path: Path, after: int, pace: str) -> None:
    """SIGTERM writes everything logged before it, then the process dies of SIGTERM.

    ``before-any-flush``: the interval never passes and fewer lines than the bound wait, so only
    the SIGTERM flush can have written them. ``tight-loop``: the signal lands anywhere in the
    logging calls, including the flushes the bound on waiting lines forces.
    """
    rng = random.Random(after)
    runs = [(tmp_path / f"run{i}", after, rng.uniform(0.0, 0.03), "--pace", pace) for i in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda args: _terminated(*args), runs))
    for status, reported, run in results:
        assert status == -signal.SIGTERM
        assert assert_whole_prefix(run) > reported
        assert len(step_messages(run.log_messages)) > reported
        assert len(step_messages(run.jsonl_messages)) > reported
        assert_best_parses(run)


def test_sigterm_chains_to_the_previous_python_handler(tmp_path: Path) -> None:
    """A SIGTERM handler installed before the logger still runs, after the files are flushed."""
    marker = tmp_path / "marker.txt"
    options = ("--pace", "0.001", "--previous-handler", str(marker))
    status, reported, run = _terminated(tmp_path / "run", 150, 0.01, *options)
    assert status == 7  # the previous handler ended the process with os._exit(7): no atexit
    assert marker.read_text(encoding="utf-8") == "previous handler ran\n"
    assert assert_whole_prefix(run) > reported
    assert len(step_messages(run.log_messages)) > reported


def test_sigterm_during_a_flush_loses_nothing(tmp_path: Path) -> None:
    """A SIGTERM that arrives while the main thread is writing a flush loses none of its lines."""
    with Worker("term-in-flush", tmp_path, "--steps", "3", "--flush-interval", "1000") as worker:
        status = worker.wait()
        assert status == -signal.SIGTERM, worker.stderr()
    run = read_run(tmp_path)
    assert run.csv_steps == [0, 1, 2]
    assert step_messages(run.log_messages) == [0, 1, 2]
    assert step_messages(run.jsonl_messages) == [0, 1, 2]
    assert run.best == {"train_loss": {"value": 1 / 3, "step": 2, "mode": "min"}}


# ---------------------------------------------------------------------------------- fork


@pytest.mark.parametrize("child_flushes", [False, True], ids=["child-exits", "child-flushes"])
def test_forked_child_does_not_write_parent_lines_again(
    tmp_path: Path, child_flushes: bool
) -> None:
    """Lines buffered before a fork appear once, whether or not the child flushes."""
    options = ["--steps", "3", "--flush-interval", "1000"]
    run_worker("fork", tmp_path, *options, *(["--child-flushes"] if child_flushes else []))
    run = read_run(tmp_path)
    child = ["child"] if child_flushes else []
    assert run.csv_steps == [0, 1, 2]
    assert sorted(run.log_messages) == sorted(["step 0", "step 1", "step 2", *child])
    assert sorted(run.jsonl_messages) == sorted(["step 0", "step 1", "step 2", *child])


def test_fork_during_a_flush_leaves_the_child_free_to_log(tmp_path: Path) -> None:
    """A child forked while another thread is writing a flush can log and flush (no dead lock)."""
    run_worker("fork-busy", tmp_path, "--steps", "3", "--flush-interval", "1000")
    run = read_run(tmp_path)
    assert run.csv_steps == [0, 1, 2]
    assert sorted(run.log_messages) == ["child", "step 0", "step 1", "step 2"]
    assert sorted(run.jsonl_messages) == ["child", "step 0", "step 1", "step 2"]


def test_forked_child_does_not_rewrite_an_older_best_json(tmp_path: Path) -> None:
    """A child that flushes after the parent saved a newer best does not roll best.json back."""
    run_worker("fork-best", tmp_path, "--flush-interval", "1000")
    best = json.loads((tmp_path / "best.json").read_text(encoding="utf-8"))
    assert best == {"train_loss": {"value": 0.5, "step": 1, "mode": "min"}}


def test_forked_child_metrics_go_to_a_file_of_its_own(tmp_path: Path) -> None:
    """A child's metric rows go to metrics_pid<pid>.csv; the parent's metrics.csv stays whole."""
    run_worker("fork-metric", tmp_path, "--flush-interval", "1000")
    header = "step,split,name,value,wall_time"
    parent = (tmp_path / "metrics.csv").read_text(encoding="utf-8").splitlines()
    assert parent[0] == header and [row.split(",")[0] for row in parent[1:]] == ["0", "1"]
    (child_file,) = tmp_path.glob("metrics_pid*.csv")
    child = child_file.read_text(encoding="utf-8").splitlines()
    assert child[0] == header and child[1].startswith("100,train,loss,0.01,")
    assert len(child) == 2


def test_forked_child_that_never_flushes_leaves_no_metrics_file(tmp_path: Path) -> None:
    """A child that logs a metric and exits without a flush creates no metrics_pid<pid>.csv
    (an empty file without even a header): the file appears only with its first rows."""
    run_worker("fork-quiet", tmp_path, "--flush-interval", "1000")
    assert list(tmp_path.glob("metrics_pid*.csv")) == []
    assert read_run(tmp_path).csv_steps == [0]
