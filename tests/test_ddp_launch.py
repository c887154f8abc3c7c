"""tests/ddp_launch.py: a hung torchrun job fails its test within the timeout and leaves nothing
running, although torchrun starts every worker in a session of its own."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.ddp_launch import LaunchResult, kill_tree, torchrun

HANG = Path(__file__).parent / "torch" / "workers" / "hang_worker.py"
TIMEOUT = 30.0  # room for torchrun and two workers to start on a loaded machine

pytestmark = pytest.mark.ddp


def _pids(pid_dir: Path) -> list[int]:
    return [int(p.read_text()) for p in sorted(pid_dir.glob("rank*.pid")) if p.read_text()]


def test_hanging_workers_are_killed_on_timeout(tmp_path: Path) -> None:
    """Two ranks that never end: the launch returns timed out within the timeout (plus the kill),
    and neither worker survives it."""
    results: list[LaunchResult] = []
    launch = threading.Thread(
        target=lambda: results.append(torchrun(HANG, str(tmp_path), timeout=TIMEOUT)),
        daemon=True,
    )
    started = time.monotonic()
    launch.start()
    launch.join(TIMEOUT + 45)
    elapsed = time.monotonic() - started
    pids = _pids(tmp_path)
    if launch.is_alive():  # clean up what the launcher failed to kill before failing
        for pid in pids:
            kill_tree(pid)
        pytest.fail(f"the launch still waits {elapsed:.0f}s after a timeout of {TIMEOUT:.0f}s")
    (result,) = results
    assert result.timed_out
    assert elapsed < TIMEOUT + 45
    assert sorted(result.stdout.split("\n")[:-1]) == ["rank 0 hangs", "rank 1 hangs"]
    assert len(pids) == 2
    assert [pid for pid in pids if psutil.pid_exists(pid)] == []
