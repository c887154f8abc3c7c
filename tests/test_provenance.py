"""run.json: exact content for clean and dirty repositories, reopening, how runs end, bad input."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import expmate
from expmate import ExperimentLogger, provenance
from tests.conftest import clean_git_record, git
from tests.ddp_launch import REPO_ROOT, worker_env

KEYS = [
    "format",
    "run_id",
    "run_dir",
    "command",
    "orig_argv",
    "executable",
    "cwd",
    "start_time",
    "end_time",
    "status",
    "versions",
    "world_size",
    "ranks",
    "torchrun",
    "git",
    "previous",
]


def read(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))


def expected_versions() -> dict[str, Any]:
    torch = sys.modules.get("torch")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__ if torch else importlib.metadata.version("torch"),
        "cuda": torch.version.cuda if torch else None,
        "expmate": expmate.__version__,
        "torch_imported": torch is not None,
    }


def this_process() -> list[dict[str, Any]]:
    host = socket.gethostname()
    return [{"rank": 0, "local_rank": 0, "host": host, "pid": os.getpid(), "gpu": None}]


def run_logged(run_dir: Path, **kwargs: Any) -> tuple[float, float]:
    """Open and close a logger on ``run_dir``; the clock before and after."""
    before = time.time()
    ExperimentLogger(run_dir=run_dir, console_output=False, **kwargs).close()
    return before, time.time()


def test_clean_repository(git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every field of run.json, in order, for a clean repository; no git.diff."""
    monkeypatch.chdir(git_repo)
    monkeypatch.setattr(sys, "argv", ["train.py", "lr=0.1"])
    run_dir = tmp_path / "run"
    before, after = run_logged(run_dir, capture_git=True)
    record = read(run_dir)
    assert list(record) == KEYS
    start, end = record.pop("start_time"), record.pop("end_time")
    assert before <= start <= end <= after
    assert record == {
        "format": 1,
        "run_id": "run",
        "run_dir": str(run_dir.resolve()),
        "command": ["train.py", "lr=0.1"],
        "orig_argv": sys.orig_argv,
        "executable": sys.executable,
        "cwd": str(git_repo),
        "status": "finished",
        "versions": expected_versions(),
        "world_size": 1,
        "ranks": this_process(),
        "torchrun": None,
        "git": {**clean_git_record(git_repo), "diff": None},
        "previous": [],
    }
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "attempts.jsonl",
        "events.jsonl",
        "exp.log",
        "run.json",
        "summary.json",
    ]


def test_dirty_repository(git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dirty tree: the flag, the untracked count, and the diff against HEAD in git.diff."""
    (git_repo / "train.py").write_text("lr = 0.2\nepochs = 3\n")
    (git_repo / "notes.txt").write_text("try a smaller lr\n")
    monkeypatch.chdir(git_repo)
    run_dir = tmp_path / "run"
    run_logged(run_dir, capture_git=True)
    diff = git(git_repo, "diff", "HEAD").encode()
    assert read(run_dir)["git"] == {
        **clean_git_record(git_repo),
        "dirty": True,
        "untracked": 1,
        "diff_bytes": len(diff),
        "diff": "git.diff",
    }
    assert (run_dir / "git.diff").read_bytes() == diff
    assert b"-lr = 0.1\n+lr = 0.2\n" in diff


def test_reopened_run_keeps_earlier_records(
    git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second start moves the first record into ``previous`` and its git.diff aside."""
    monkeypatch.chdir(git_repo)
    run_dir = tmp_path / "run"
    (git_repo / "train.py").write_text("lr = 0.2\nepochs = 3\n")
    run_logged(run_dir, capture_git=True)
    first = read(run_dir)
    first_diff = (run_dir / "git.diff").read_bytes()
    (git_repo / "train.py").write_text("lr = 0.3\nepochs = 3\n")
    run_logged(run_dir, capture_git=True)
    run_logged(run_dir, capture_git=False)
    record = read(run_dir)
    first["git"]["diff"] = "git.0.diff"
    del first["previous"]  # the list is kept flat: earlier records lose their own
    assert record["previous"][0] == first
    assert record["previous"][1]["git"]["diff"] == "git.1.diff"
    assert record["previous"][1]["start_time"] > first["end_time"]
    assert record["git"] == {"state": "disabled"}
    assert (run_dir / "git.0.diff").read_bytes() == first_diff
    assert b"+lr = 0.3\n" in (run_dir / "git.1.diff").read_bytes()
    assert not (run_dir / "git.diff").exists()


def test_git_off_by_default_switch_and_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """expmate.capture_git (off in this suite) decides unless capture_git= is given."""
    monkeypatch.chdir(tmp_path)
    run_logged(tmp_path / "a")
    assert read(tmp_path / "a")["git"] == {"state": "disabled"}
    run_logged(tmp_path / "b", capture_git=True)  # tmp_path is in no repository
    assert read(tmp_path / "b")["git"] == {"state": "not_a_repository"}


@pytest.mark.parametrize("bad", ["yes", 1, Path(".")])
def test_bad_capture_git_writes_nothing(tmp_path: Path, bad: Any) -> None:
    """capture_git must be a bool or None; a rejected logger creates no run directory."""
    with pytest.raises(TypeError, match=r"capture_git must be True, False or None, not "):
        ExperimentLogger(run_dir=tmp_path / "run", capture_git=bad)
    assert not (tmp_path / "run").exists()


def test_failed_and_interrupted(tmp_path: Path) -> None:
    """The end of a run as run_end.outcome sees it: an exception out of ``with``, a Ctrl-C,
    a close() in a ``finally`` while an exception propagates."""
    with pytest.raises(ValueError), ExperimentLogger(tmp_path / "a", console_output=False):
        raise ValueError("bad lr")
    with pytest.raises(KeyboardInterrupt), ExperimentLogger(tmp_path / "b", console_output=False):
        raise KeyboardInterrupt
    logger = ExperimentLogger(tmp_path / "c", console_output=False)
    with pytest.raises(RuntimeError):
        try:
            raise RuntimeError("diverged")
        finally:
            logger.close()
    ends = [
        {k: read(tmp_path / d).get(k) for k in ("status", "exception", "message", "signal")}
        for d in "abc"
    ]
    assert ends == [
        {"status": "failed", "exception": "ValueError", "message": "bad lr", "signal": None},
        {"status": "interrupted", "exception": None, "message": None, "signal": "SIGINT"},
        {"status": "failed", "exception": "RuntimeError", "message": "diverged", "signal": None},
    ]
    assert list(read(tmp_path / "a"))[8:12] == ["end_time", "status", "exception", "message"]


def test_broken_repository_warns_once_and_run_goes_on(
    git_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A corrupt index: recorded in run.json, one line on stderr, the run's files complete."""
    (git_repo / ".git" / "index").write_bytes(b"garbage")
    monkeypatch.chdir(git_repo)
    run_dir = tmp_path / "run"
    with ExperimentLogger(run_dir, console_output=False, capture_git=True) as logger:
        logger.info("still logging")
        logger.log_metric(0, "val", "loss", 0.5)
    reason = "`git status` failed: fatal: .git/index: index file smaller than expected"
    assert read(run_dir)["git"] == {"state": "error", "root": str(git_repo), "error": reason}
    assert capfd.readouterr().err == (
        f"expmate: reading the git state of {git_repo} for run.json failed (RuntimeError: "
        f"{reason}); training continues, further failures of it are not reported\n"
    )
    assert (run_dir / "exp.log").read_text().endswith(" - INFO - still logging\n")
    assert (run_dir / "metrics.csv").read_text().splitlines()[1].startswith("0,val,loss,0.5,")
    assert read(run_dir)["status"] == "finished"


def test_failing_disk_for_run_json_loses_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """run.json that cannot be written (a full disk): one warning, the other files complete."""

    def full_disk(path: Path, text: str | bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(provenance, "replace_file", full_disk)
    run_dir = tmp_path / "run"
    with ExperimentLogger(run_dir, console_output=False) as logger:
        logger.info("hello")
    assert capfd.readouterr().err == (
        f"expmate: writing {run_dir / 'run.json'} failed (OSError: [Errno 28] No space left on "
        "device); training continues, further failures of it are not reported\n"
    )
    assert (run_dir / "exp.log").read_text().endswith(" - INFO - hello\n")
    assert not (run_dir / "run.json").exists()


def test_unreadable_earlier_record_is_set_aside(tmp_path: Path) -> None:
    """An earlier run.json that is not JSON is kept as run.json.unreadable, not lost."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text('{"format": 1, "cut')
    run_logged(run_dir)
    assert (run_dir / "run.json.unreadable").read_text() == '{"format": 1, "cut'
    assert read(run_dir)["previous"] == []


def test_forked_child_leaves_the_record_alone(tmp_path: Path) -> None:
    """A forked child finishing its copies of the open records does not touch the parent's."""
    logger = ExperimentLogger(tmp_path, console_output=False)
    pid = os.fork()
    if pid == 0:
        provenance._finish_open_records()
        os._exit(0)
    os.waitpid(pid, 0)
    logger._run_record._thread.join(30)
    assert read(tmp_path)["status"] == "running"
    logger.close()
    assert read(tmp_path)["status"] == "finished"


def test_torchrun_environment() -> None:
    """torchrun's variables, numbers as numbers; None outside torchrun."""
    env = {
        "TORCHELASTIC_RUN_ID": "exp1",
        "TORCHELASTIC_RESTART_COUNT": "2",
        "TORCHELASTIC_MAX_RESTARTS": "3",
        "GROUP_RANK": "1",
        "GROUP_WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "8",
        "MASTER_ADDR": "node0",
        "MASTER_PORT": "29500",
        "ROLE_NAME": "default",
    }
    assert provenance.torchrun_environment(env) == {
        "restart_count": 2,
        "max_restarts": 3,
        "group_rank": 1,
        "group_world_size": 2,
        "local_world_size": 8,
        "master_port": 29500,
        "run_id": "exp1",
        "role_name": "default",
        "master_addr": "node0",
    }
    assert provenance.torchrun_environment({"RANK": "0"}) is None


SCRIPT = """
import os, signal, sys, time
from expmate import ExperimentLogger
logger = ExperimentLogger(sys.argv[1], console_output=False)
print("torch" in sys.modules, flush=True)
if sys.argv[2] == "raise":
    raise ValueError("bad lr")
time.sleep(60)
"""


def _script(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(),
        cwd=REPO_ROOT,
    )


def test_logger_never_closed_records_the_exception(tmp_path: Path) -> None:
    """At exit: an uncaught exception is the status; torch was never imported, its installed
    version is read from the package metadata."""
    proc = _script(tmp_path, str(tmp_path / "run"), "raise")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "ValueError: bad lr" in err
    assert out == "False\n"
    record = read(tmp_path / "run")
    assert (record["status"], record["exception"], record["message"]) == (
        "failed",
        "ValueError",
        "bad lr",
    )
    assert record["versions"]["torch_imported"] is False
    assert record["versions"]["torch"] == importlib.metadata.version("torch")
    assert record["command"] == [str(tmp_path / "train.py"), str(tmp_path / "run"), "raise"]


def test_sigterm_records_the_signal(tmp_path: Path) -> None:
    """SIGTERM to a process whose logger is open: interrupted by SIGTERM, with an end time."""
    proc = _script(tmp_path, str(tmp_path / "run"), "sleep")
    assert proc.stdout is not None and proc.stdout.readline() == "False\n"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    record = read(tmp_path / "run")
    assert (record["status"], record["signal"]) == ("interrupted", "SIGTERM")
    assert record["end_time"] >= record["start_time"]
