"""ExperimentLogger under real torchrun (2 CPU ranks, gloo): files, reduced values, best, console."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ddp_launch import (
    REPO_ROOT,
    LaunchResult,
    launch_once,
    run_group,
    torchrun,
    worker_env,
)

WORKERS = Path(__file__).parent / "workers"
EXAMPLE = REPO_ROOT / "examples" / "ddp" / "train.py"
SMALL = ("device=cpu", "training.epochs=2", "data.train_size=1024", "data.val_size=256")

pytestmark = pytest.mark.ddp


def rows(path: Path) -> list[tuple[int, str, str, float]]:
    """``(step, split, name, value)`` of every row of a metrics CSV."""
    with path.open(newline="") as f:
        return [
            (int(r["step"]), r["split"], r["name"], float(r["value"])) for r in csv.DictReader(f)
        ]


def results(run_dir: Path, world: int = 2) -> list[dict[str, Any]]:
    return [json.loads((run_dir / f"result_rank{r}.json").read_text()) for r in range(world)]


def _launch_main(run_dir: Path) -> LaunchResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    launch = torchrun(WORKERS / "logger_worker.py", str(run_dir), "main", timeout=120)
    assert launch.returncode == 0, launch.output
    return launch


@pytest.fixture(scope="module")
def main_run(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[Path, LaunchResult]:
    """One launch of the main worker, shared by the tests of this module (and by the pytest-xdist
    workers of one session, so the job runs once)."""
    return launch_once("ddp_main", request, tmp_path_factory, _launch_main)


def test_file_names_per_rank(main_run: tuple[Path, LaunchResult]) -> None:
    """Rank 0 writes the main files, rank 1 its own suffixed ones, and nothing else."""
    run_dir, _ = main_run
    names = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("result_"))
    assert names == [
        "attempts.jsonl",
        "attempts_rank1.jsonl",
        "best.json",
        "events.jsonl",
        "events_rank1.jsonl",
        "exp.log",
        "exp_rank1.log",
        "main_only.txt",
        "metrics.csv",
        "metrics_rank1.csv",
        "run.json",
        "summary.json",
    ]
    assert "Rank 1: hello" in (run_dir / "exp_rank1.log").read_text()
    assert "Rank 1: hello" not in (run_dir / "exp.log").read_text()
    events = [
        json.loads(line) for line in (run_dir / "events_rank1.jsonl").read_text().splitlines()
    ]
    assert {e["rank"] for e in events} == {1}
    assert any(e.get("stage") == "epoch/train" and e.get("epoch") == 2 for e in events)


def test_reduced_values_are_exact(main_run: tuple[Path, LaunchResult]) -> None:
    """metrics.csv holds the global mean (weighted), sum, min and max, not rank 0's values."""
    run_dir, _ = main_run
    got = rows(run_dir / "metrics.csv")
    reduced = [r for r in got if r[2] != "local_step_time"]
    expected = []
    for e in range(3):
        loss0, loss1 = 1.0 + e, 3.0 + e
        acc = [(0.5, 1.0), (0.75, 0.5), (0.625, 0.25)][e]
        expected += [
            (e, "train", "loss_sum", loss0 * 30 + loss1 * 10),
            (e, "train", "samples", 40.0),
            (e, "train", "loss", (loss0 * 30 + loss1 * 10) / 40),
            (e, "train", "grad_norm", 7.0),
            (e, "train", "lr", -0.5),
            (e, "val", "loss", [3.0, 1.25, 3.25][e]),
            (e, "val", "accuracy", (acc[0] * 30 + acc[1] * 10) / 40),
        ]
    assert reduced == expected
    assert [r for r in got if r[2] == "local_step_time"] == [
        (e, "train", "local_step_time", 0.1) for e in range(3)
    ]
    assert rows(run_dir / "metrics_rank1.csv") == [
        (e, "train", "local_step_time", 0.2) for e in range(3)
    ]


def test_best_json_holds_the_reduced_best(main_run: tuple[Path, LaunchResult]) -> None:
    """best.json and get_best_metric on every rank agree on the reduced best (not rank 0's)."""
    run_dir, _ = main_run
    best = json.loads((run_dir / "best.json").read_text())
    assert best["val_loss"] == {"value": 1.25, "step": 1, "mode": "min"}
    assert best["val_accuracy"] == {"value": 0.6875, "step": 1, "mode": "max"}
    for result in results(run_dir):
        assert result["best"] == {
            "val_loss": best["val_loss"],
            "val_accuracy": best["val_accuracy"],
        }


def test_generated_run_dir_is_shared(main_run: tuple[Path, LaunchResult]) -> None:
    """Without run_dir, rank 0 names runs/<run_id> and every rank writes into that directory."""
    run_dir, _ = main_run
    generated = {result["generated"] for result in results(run_dir)}
    assert len(generated) == 1
    (path,) = (Path(p) for p in generated)
    assert path.parent.name == "runs"
    assert sorted(p.name for p in path.iterdir()) == [
        "attempts.jsonl",
        "attempts_rank1.jsonl",
        "events.jsonl",
        "events_rank1.jsonl",
        "exp.log",
        "exp_rank1.log",
        "run.json",
        "summary.json",
    ]


def test_console_from_rank_zero_only(main_run: tuple[Path, LaunchResult]) -> None:
    """One console copy: rank 0's lines once, rank 1's never; log_every thins the console."""
    _, launch = main_run
    assert launch.stdout.count("Rank 0: hello") == 1
    assert "Rank 1: hello" not in launch.stdout
    assert "Epoch 0 summary from rank 0" in launch.stdout
    assert "Epoch 1 summary" not in launch.stdout
    assert "summary from rank 1" not in launch.stdout


def test_mismatch_raises_on_every_rank(main_run: tuple[Path, LaunchResult]) -> None:
    """A metric logged by rank 0 only raises the same MetricMismatchError on both ranks."""
    run_dir, _ = main_run
    first, second = results(run_dir)
    assert first["mismatch"] == second["mismatch"]
    assert "val/extra_loss: logged by ranks [0], missing on ranks [1]" in first["mismatch"]
    assert all(r[0] != 10 for r in rows(run_dir / "metrics.csv"))


def test_rank_helpers_and_timer_across_ranks(main_run: tuple[Path, LaunchResult]) -> None:
    """setup_ddp is idempotent; main_process_only runs once; the slow rank is named."""
    run_dir, _ = main_run
    first, second = results(run_dir)
    assert first["setup"] == first["again"] == [0, 0, 2]
    assert second["setup"] == second["again"] == [1, 1, 2]
    assert first["helpers"] == [0, 0, 2, True] and second["helpers"] == [1, 1, 2, False]
    assert (first["main_only"], second["main_only"]) == ("ran", None)
    assert first["marker_seen"] == second["marker_seen"] == "rank0"
    assert first["timer"]["max_rank"] == 1 and first["timer"]["min_rank"] == 0
    assert first["timer"]["max"] == second["timer"]["max"] >= 0.3
    log = (run_dir / "exp.log").read_text()
    assert "Timer [uneven]: max 0.3" in log and "s on rank 1 (mean 0.1" in log
    assert "Timer [uneven]" not in (run_dir / "exp_rank1.log").read_text()
    event = next(
        json.loads(line)
        for line in (run_dir / "events.jsonl").read_text().splitlines()
        if "Timer [uneven]" in line
    )
    assert event["timer"] == "uneven" and event["max_rank"] == 1 and event["world_size"] == 2


def test_example_under_torchrun(tmp_path: Path) -> None:
    """The DDP example trains under torchrun and writes reduced metrics and best.json."""
    launch = torchrun(EXAMPLE, f"run_dir={tmp_path / 'run'}", *SMALL, timeout=120)
    assert launch.returncode == 0, launch.output
    run_dir = tmp_path / "run"
    assert (run_dir / "exp_rank1.log").exists()
    names = {(r[1], r[2]) for r in rows(run_dir / "metrics.csv")}
    assert {("train", "loss"), ("val", "loss"), ("val", "accuracy")} <= names
    assert set(json.loads((run_dir / "best.json").read_text())) >= {"val_loss", "val_accuracy"}
    assert launch.stdout.count("Starting experiment") == 1


def test_example_under_plain_python(tmp_path: Path) -> None:
    """The same script runs as a single process without torchrun."""
    run_dir = tmp_path / "run"
    argv = [sys.executable, str(EXAMPLE), f"run_dir={run_dir}", *SMALL]
    launch = run_group(argv, timeout=120, env=worker_env())
    assert launch.returncode == 0, launch.output
    assert not list(run_dir.glob("*_rank*"))
    assert {(r[1], r[2]) for r in rows(run_dir / "metrics.csv")} >= {("val", "accuracy")}
    assert "world_size=1" in launch.stdout
