"""Run directories shared by the tests of the commands, written once per module by the logger."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from expmate import cli
from tests.ddp_launch import REPO_ROOT, worker_env
from tests.run_factory import make_run


def killed_run(run_dir: Path) -> Path:
    """A run whose process died of SIGKILL while running; its heartbeat is then moved one minute
    back, as if a minute had passed since."""
    code = (
        "import time\nfrom expmate import ExperimentLogger\n"
        f"logger = ExperimentLogger({str(run_dir)!r}, console_output=False, flush_interval=0.05)\n"
        "for step in range(3):\n"
        "    logger.log_metric(step, 'val', 'loss', 1.0 - step / 10)\n"
        "logger.flush()\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=worker_env(),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    assert summary["status"] == "running"
    summary["heartbeat"] -= 60
    summary["start_time"] -= 60
    path.write_text(json.dumps(summary))
    return run_dir


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/`` with lr_0.1 and lr_0.01 (finished, started in that order), lr_0.001 (failed,
    with checkpoint events) and killed (SIGKILL while running)."""
    root = tmp_path_factory.mktemp("cli") / "runs"
    make_run(root / "lr_0.1", lr=0.1)
    make_run(root / "lr_0.01", lr=0.01, width=128)
    make_run(root / "lr_0.001", lr=0.001, fail=True, checkpoints=True)
    killed_run(root / "killed")
    return root


def expmate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table(out: str) -> list[list[str]]:
    """The rows of a table printed by the command (header first), cells split on 2+ spaces."""
    lines = [line.strip() for line in out.splitlines()]
    return [re.split(r"\s{2,}", line) for line in lines if line and not set(line) <= {"─"}]
