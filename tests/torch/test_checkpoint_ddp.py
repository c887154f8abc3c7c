"""CheckpointManager under real torchrun (2 CPU ranks, gloo, a small model and optimizer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.ddp_launch import LaunchResult, launch_once, torchrun
from tests.helpers import read_events

WORKER = Path(__file__).parent / "workers" / "checkpoint_worker.py"

pytestmark = pytest.mark.ddp


def _launch_main(run_dir: Path) -> LaunchResult:
    launch = torchrun(WORKER, str(run_dir), "main", timeout=240)
    assert launch.returncode == 0, launch.output
    return launch


@pytest.fixture(scope="module")
def main_run(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[Path, list[dict[str, Any]]]:
    """One launch of the main worker shared by the tests below; its per-rank results."""
    run_dir, _ = launch_once("checkpoint_main", request, tmp_path_factory, _launch_main)
    return run_dir, [json.loads((run_dir / f"result_rank{r}.json").read_text()) for r in (0, 1)]


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def checkpoint_events(path: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_events(path) if e.get("checkpoint") == kind]


def test_best_is_the_step_of_the_best_global_value(
    main_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    """Rank 0's own values say step 1, rank 1's step 5; the global mean says step 3, and so do
    both ranks, the manifest and the loaded checkpoint (whose weights are step 3's)."""
    run_dir, results = main_run
    for result in results:
        best = result["best"]
        assert (best["best_step"], best["latest_step"]) == (3, 9)
        assert best["loaded_best"] == [3, {"s": 3}, True]
    manifest = json.loads((run_dir / "checkpoints" / "checkpoints.json").read_text())
    assert (manifest["best_step"], manifest["monitor"], manifest["mode"]) == (3, "val/loss", "min")
    saved = checkpoint_events(run_dir / "events.jsonl", "saved")
    values = [e["value"] for e in saved if e["file"].startswith("checkpoints/")]
    assert values == [4.0, 5.0, 4.0, 1.5, 7.0, 4.25, 6.5, 9.0, 9.0, 9.0]


def test_retention_after_ten_saves(main_run: tuple[Path, list[dict[str, Any]]]) -> None:
    """keep_last=3, keep_best=2 over 10 saves: steps 7, 8, 9 and the best two, 3 and 0 (tied
    with step 2 at 4.0: the earlier wins), on disk and in every rank's list."""
    run_dir, results = main_run
    assert names(run_dir / "checkpoints") == [
        "checkpoints.json",
        "step_00000000.pt",
        "step_00000003.pt",
        "step_00000007.pt",
        "step_00000008.pt",
        "step_00000009.pt",
    ]
    expected = [[0, "step_00000000.pt", 4.0], [3, "step_00000003.pt", 1.5]] + [
        [s, f"step_0000000{s}.pt", 9.0] for s in (7, 8, 9)
    ]
    assert [r["best"]["listed"] for r in results] == [expected, expected]
    deleted = checkpoint_events(run_dir / "events.jsonl", "deleted")
    assert [e["step"] for e in deleted if e["file"].startswith("checkpoints/")] == [1, 2, 4, 5, 6]
    assert checkpoint_events(run_dir / "events_rank1.jsonl", "saved") == []


def test_an_unreduced_monitor_is_warned_about(main_run: tuple[Path, list[dict[str, Any]]]) -> None:
    """A monitor logged with reduce=None differs across ranks: rank 0's value is recorded (the
    one metrics.csv holds) and a warning says why that is not the global value."""
    run_dir, results = main_run
    assert [r["unreduced"]["listed"] for r in results] == [[[0, 0.5]], [[0, 0.5]]]
    warnings = [e["message"] for e in checkpoint_events(run_dir / "events.jsonl", "warning")]
    assert warnings == [
        "ranks hold different values of val/local_loss at step 0: it is not reduced across "
        "ranks, so rank 0's own value ranks checkpoints (the value in metrics.csv); log it with "
        "reduce='mean' to rank by the global value"
    ]


def test_async_save_writes_identical_files(main_run: tuple[Path, list[dict[str, Any]]]) -> None:
    """The same DDP state saved synchronously and from the background thread: the same bytes."""
    run_dir, _ = main_run
    sync_file = run_dir / "sync" / "step_00000007.pt"
    assert (run_dir / "async" / "step_00000007.pt").read_bytes() == sync_file.read_bytes()
    assert names(run_dir / "async") == ["checkpoints.json", "step_00000007.pt"]


def test_corrupt_checkpoint_skipped_on_every_rank(
    main_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    """A corrupt newest checkpoint: both ranks load the previous one; rank 0 warns once; the next
    save moves it aside. Different steps on the ranks: the same error on both, nothing written."""
    run_dir, results = main_run
    after_save = [
        "checkpoints.json",
        "step_00000000.pt",
        "step_00000001.pt",
        "step_00000002.pt.corrupt",
        "step_00000003.pt",
    ]
    for result in results:
        corrupt = result["corrupt"]
        assert (corrupt["loaded"], corrupt["after_load"]) == (1, [0, 1])
        assert corrupt["after_save"] == corrupt["after_error"] == after_save
        assert (
            corrupt["steps_error"]
            == "ranks called save() with different steps (rank 0: 100, rank 1: 101)"
        )
    [warning] = checkpoint_events(run_dir / "events.jsonl", "corrupt")
    assert (warning["step"], warning["file"]) == (2, "corrupt/step_00000002.pt")
    assert warning["error"].startswith("ranks 0, 1: ")
    for events_file in ("events.jsonl", "events_rank1.jsonl"):
        loaded = checkpoint_events(run_dir / events_file, "loaded")
        assert [e["file"] for e in loaded if e["file"].startswith("corrupt/")] == [
            "corrupt/step_00000001.pt"
        ]


def test_sharded_state_saved_and_resumed(main_run: tuple[Path, list[dict[str, Any]]]) -> None:
    """FSDP: each rank writes its shard, .metadata commits it; resume restores the parameters,
    the optimizer moments and the scheduler; load_latest() gives the whole tensors."""
    run_dir, results = main_run
    assert names(run_dir / "sharded" / "step_00000001") == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
        "state.pt",
    ]
    for result in results:
        sharded = result["sharded"]
        assert (sharded["resumed"], sharded["extra"], sharded["scheduler_epoch"]) == (1, "x", 1)
        assert sharded["params_restored"] and sharded["moments_restored"]
        assert sharded["full_model"]
        assert sharded["full_keys"] == [
            "extra", "format", "model", "monitor", "optimizer", "rng", "scheduler", "step",
            "world_size",
        ]  # fmt: skip
        assert sharded["async_before_wait"] == 0
        assert sharded["async_after_wait"] == [[2, "sharded"]]
        assert sharded["async_files"] == [".metadata", "__0_0.distcp", "__1_0.distcp", "state.pt"]


def test_resume_after_a_crash_gives_the_same_losses(tmp_path: Path) -> None:
    """Attempt 0 dies after step 5 (checkpoints at 0, 2, 4); torchrun restarts it; attempt 1
    resumes at step 4 and every rank's losses equal an uninterrupted run's, bit for bit."""
    launch = torchrun(
        WORKER, str(tmp_path), "resume", timeout=300, extra_torchrun_args=("--max-restarts=1",)
    )
    assert launch.returncode == 0, launch.output
    references = []
    for rank in (0, 1):
        first = json.loads((tmp_path / f"result_rank{rank}_attempt0.json").read_text())
        second = json.loads((tmp_path / f"result_rank{rank}_attempt1.json").read_text())
        assert (first["attempt"], second["attempt"]) == (0, 1)
        assert (first["latest_at_start"], second["latest_at_start"]) == (None, 4)
        assert sorted(first["losses"], key=int) == ["0", "1", "2", "3", "4", "5"]
        assert sorted(second["losses"], key=int) == ["5", "6", "7"]
        reference = first["reference"]
        references.append(reference)
        assert first["losses"] == {k: reference[k] for k in first["losses"]}
        assert second["losses"] == {k: reference[k] for k in second["losses"]}
    assert references[0] != references[1]  # each rank draws its own batches: both must resume
    for name in ("events.jsonl", "events_rank1.jsonl"):  # logger.resume(5) on every rank
        resumes = [e for e in read_events(tmp_path / name) if "resume_step" in e]
        assert [(e["resume_step"], e["attempt"], e["restart_count"]) for e in resumes] == [
            (5, 1, 1)
        ]
    assert names(tmp_path / "checkpoints") == [
        "checkpoints.json",
        "step_00000004.pt",
        "step_00000006.pt",
    ]


def test_a_rank_that_never_comes_fails_the_other_in_time(
    main_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    """Rank 1 skips save(): rank 0 gets CheckpointSyncError after the manager's 3 s timeout."""
    _, results = main_run
    assert results[0]["missing"]["error"].startswith(
        "checkpoint save failed on rank 0: another rank did not reach it within 3s or left the "
        "job. Every rank must call every CheckpointManager method at the same point. Cause: "
    )
    assert results[1]["missing"] == {}
