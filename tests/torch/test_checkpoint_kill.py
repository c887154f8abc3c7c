"""SIGKILL at random moments of checkpoint saves: a complete checkpoint always loads."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest

from tests.ddp_launch import run_group, worker_env

WORKER = Path(__file__).parent / "workers" / "checkpoint_kill_worker.py"
RUNS = 20


@pytest.mark.slow
def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    """20 kills, each at a random moment of a save cycle (inside the checkpoint write, the
    manifest's replacement or the retention): after each, a fresh manager loads the newest
    checkpoint whole (every weight equals its step), never skipping a corrupt one; the writes
    that were cut are removed by the next save."""
    launch = run_group(
        [sys.executable, str(WORKER), str(tmp_path), str(RUNS), "20261201"],
        timeout=300,
        env=worker_env(),
    )
    assert launch.returncode == 0, launch.output
    runs = json.loads((tmp_path / "summary.json").read_text())["runs"]
    assert len(runs) == RUNS
    shown = json.dumps(runs, indent=1)
    for run in runs:
        assert run["killed"], shown
        assert run["loaded_step"] == run["latest_step"], shown
        assert (run["weights_match"], run["extra_match"], run["corrupt_events"]) == (True, True, 0)
    steps = [run["loaded_step"] for run in runs]
    assert all(later >= earlier + 2 for earlier, later in itertools.pairwise(steps))
    assert sum(run["temp_checkpoint"] for run in runs) >= 1, shown  # kills inside a write
    assert sum(bool(run["unlisted"]) for run in runs) >= 1, shown  # kills before the manifest
    # A kill leaves at most the one temporary file it cut; the next run's save removed the rest.
    assert max(run["temp_files"] for run in runs) == 1, shown
