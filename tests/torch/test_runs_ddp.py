"""Reading a 2-rank torchrun run back: load_run with every rank's events and files, and the
show/ls/compare commands on it (one launch shared by every test here)."""

from __future__ import annotations

import fcntl
import json
import socket
from pathlib import Path

import pytest

from expmate.runs import Run, load_run
from tests.cli.conftest import expmate, table
from tests.ddp_launch import torchrun

WORKER = Path(__file__).parent / "workers" / "run_worker.py"

pytestmark = pytest.mark.ddp


def _launch(run_dir: Path) -> None:
    launch = torchrun(WORKER, str(run_dir), timeout=120)
    assert launch.returncode == 0, launch.output


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Run:
    """One launch, shared by the tests here (and by the pytest-xdist workers of one session,
    through a lock file, so the job runs once)."""
    if not hasattr(request.config, "workerinput"):
        run_dir = tmp_path_factory.mktemp("ddp_run") / "ddp"
        _launch(run_dir)
        return load_run(run_dir)
    shared = tmp_path_factory.getbasetemp().parent / "ddp_run_shared"
    shared.mkdir(exist_ok=True)
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "launched").exists():
            _launch(shared / "ddp")
            (shared / "launched").write_text("ok")
    return load_run(shared / "ddp")


def test_load_run_reads_every_rank(run: Run) -> None:
    """Both ranks' events (each tagged with its rank), rank 1's own metrics file, the reduced
    metrics of metrics.csv and the summary of rank 0."""
    assert (run.ranks, run.world_size, run.status) == ([0, 1], 2, "finished")
    assert {e["rank"] for e in run.events} == {0, 1}
    assert [e["message"] for e in run.events if e["rank"] == 1 and e["level"] == "WARNING"] == [
        "rank 1 is straggling"
    ]
    times = [e["timestamp"] for e in run.events]
    assert times == sorted(times)
    assert run.metric("train", "local_time", rank=1) == ([float(s) for s in range(9)], [1.1] * 9)
    assert run.metric("train", "local_time") == ([float(s) for s in range(9)], [0.1] * 9)
    assert run.metric("val", "loss") == ([2.0, 5.0, 8.0], [3.0, 1.5, 1.0])  # mean of the ranks
    assert run.metric("train", "loss")[1] == [s + 0.5 for s in range(9)]
    assert run.metric_summary["val/loss"]["best"] == 1.0


def test_show_names_the_straggler(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """Timers name rank 1 as the slowest with a large max/min spread; rank 1's warning and
    rank 0's checkpoint events are listed; both ranks' files are counted."""
    code, out, err = expmate(capsys, "show", str(run.path))
    assert (code, err) == (0, "")
    header = {row[0]: row[1:] for row in table(out.split("\n\n")[0])}
    assert header["ranks"] == [f"2 (0-1 on {socket.gethostname()})"]  # from run.json
    timers = {
        row[0]: row for row in table(out.split("timers (slowest 2 of 2)\n")[1].split("\n\n")[0])
    }
    for name, count in (("step", "9"), ("sync", "3")):
        assert timers[name][1] == count and timers[name][5] == "1"
        assert float(timers[name][6].rstrip("x")) > 5
    assert "rank 1 is straggling" in out.split("warnings and errors: 1 warning, 0 errors")[1]
    assert out.count("Checkpoint saved: step ") == 3
    assert "slowest rank" in out.split("\nstages\n")[1].split("\n")[0]


def test_ls_and_compare(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """ls lists the run finished at step 8; compare --json gives its reduced bests."""
    code, out, _ = expmate(capsys, "ls", str(run.path))
    rows = table(out)
    assert code == 0 and rows[1][:2] == ["ddp", "finished"] and rows[1][4] == "8"
    code, out, _ = expmate(capsys, "compare", str(run.path), "--json", "-m", "val/loss")
    (row,) = json.loads(out)
    assert code == 0 and (row["val/loss.best"], row["val/loss.best_step"]) == (1.0, 8)
