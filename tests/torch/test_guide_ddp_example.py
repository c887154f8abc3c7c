"""The guide's "Distributed Training" example, verbatim, under torchrun and under plain python."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.ddp_launch import run_group, torchrun, worker_env

pytestmark = pytest.mark.ddp

# Copied character for character from the guide's "Distributed Training" section.
GUIDE_EXAMPLE = """\
from expmate.torch import mp

# Setup DDP
rank, local_rank, world_size = mp.setup_ddp()

# Create logger with rank
logger = ExperimentLogger(
    run_dir=run_dir,
    rank=rank  # Each process has its own rank
)

# Rank 0 writes to main log files
# Other ranks write to separate files (exp_rank1.log, etc.)
if rank == 0:
    logger.info(f"Training on {world_size} GPUs")

# All ranks can log
logger.info(f"Rank {rank}: Processing batch")
"""

PRELUDE = """\
import sys
from expmate import ExperimentLogger

run_dir = sys.argv[1]
"""


def messages(path: Path) -> list[str]:
    """The messages of an exp.log file, in order."""
    return [line.split(" - ", 2)[2] for line in path.read_text().splitlines()]


def jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "guide_ddp.py"
    path.write_text(PRELUDE + GUIDE_EXAMPLE)
    return path


def test_guide_ddp_example_under_torchrun(script: Path, tmp_path: Path) -> None:
    """Rank 0 writes exp.log/events.jsonl, rank 1 its own files; one console copy; no metrics."""
    run_dir = tmp_path / "exp1"
    launch = torchrun(script, str(run_dir), nproc=2, timeout=90, env={"NO_COLOR": "1"})
    assert launch.returncode == 0, launch.output
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "attempts.jsonl",
        "attempts_rank1.jsonl",
        "events.jsonl",
        "events_rank1.jsonl",
        "exp.log",
        "exp_rank1.log",
        "run.json",
        "summary.json",
    ]
    assert messages(run_dir / "exp.log") == ["Training on 2 GPUs", "Rank 0: Processing batch"]
    assert messages(run_dir / "exp_rank1.log") == ["Rank 1: Processing batch"]
    assert [(e["rank"], e["message"]) for e in jsonl(run_dir / "events_rank1.jsonl")] == [
        (1, "Rank 1: Processing batch")
    ]
    assert [e["rank"] for e in jsonl(run_dir / "events.jsonl")] == [0, 0]
    console = [line for line in launch.stdout.splitlines() if " - INFO - " in line]
    assert [line.split(" - ", 2)[2] for line in console] == [
        "Training on 2 GPUs",
        "Rank 0: Processing batch",
    ]


def test_guide_ddp_example_without_torchrun(script: Path, tmp_path: Path) -> None:
    """The same script under plain python runs as rank 0 of 1, with no process group."""
    run_dir = tmp_path / "single"
    result = run_group(
        [sys.executable, str(script), str(run_dir)], timeout=60, env=worker_env({"NO_COLOR": "1"})
    )
    assert result.returncode == 0, result.output
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "attempts.jsonl",
        "events.jsonl",
        "exp.log",
        "run.json",
        "summary.json",
    ]
    assert messages(run_dir / "exp.log") == ["Training on 1 GPUs", "Rank 0: Processing batch"]
