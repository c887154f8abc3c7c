"""expmate.torch.mp: set-up from torchrun's environment, rank helpers, timers, restarts, nodes."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch.distributed as dist

from expmate.torch import mp
from tests.ddp_launch import LaunchResult, free_port, torchrun

WORKERS = Path(__file__).parent / "workers"


class RecordingLogger:
    """Stands in for ExperimentLogger: keeps what info() received."""

    def __init__(self) -> None:
        self.infos: list[tuple[str, dict[str, Any]]] = []

    def info(self, message: str, **fields: Any) -> None:
        self.infos.append((message, fields))


def test_without_torchrun_is_one_process_and_no_group() -> None:
    """setup_ddp() outside torchrun returns (0, 0, 1) and initialises nothing."""
    assert mp.setup_ddp() == (0, 0, 1)
    assert not dist.is_initialized()
    assert (mp.get_rank(), mp.get_local_rank(), mp.get_world_size()) == (0, 0, 1)
    assert mp.is_main_process()
    mp.barrier()
    mp.cleanup_ddp()


def test_helpers_read_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a group the helpers answer from RANK, LOCAL_RANK and WORLD_SIZE."""
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert (mp.get_rank(), mp.get_local_rank(), mp.get_world_size()) == (3, 1, 4)
    assert not mp.is_main_process()


def test_main_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decorated function runs on rank 0 and returns None elsewhere, keeping its name."""
    calls: list[int] = []

    @mp.main_process_only
    def save(x: int) -> int:
        calls.append(x)
        return x * 2

    assert save(4) == 8
    monkeypatch.setenv("RANK", "1")
    assert save(5) is None
    assert calls == [4] and save.__name__ == "save"


def test_timer_across_ranks_single_process() -> None:
    """One process: the stats are its own time, logged once with fields."""
    logger = RecordingLogger()
    with mp.timer_across_ranks(logger, "step") as result:
        pass
    assert result["max"] == result["min"] == result["mean"] == result["elapsed"] >= 0
    assert (result["max_rank"], result["world_size"]) == (0, 1)
    ((message, fields),) = logger.infos
    assert message.startswith("Timer [step]: max ") and message.endswith("on rank 0, 1 rank)")
    assert fields["timer"] == "step" and fields["max_rank"] == 0


def test_timer_across_ranks_honours_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """expmate.timer = False: nothing measured, nothing logged."""
    import expmate

    monkeypatch.setattr(expmate, "timer", False)
    logger = RecordingLogger()
    with mp.timer_across_ranks(logger, "step") as result:
        pass
    assert result == {"elapsed": 0.0} and logger.infos == []


def test_timer_across_ranks_skips_on_exception() -> None:
    """A block that raises logs nothing and propagates."""
    logger = RecordingLogger()
    with pytest.raises(KeyError), mp.timer_across_ranks(logger, "step"):
        raise KeyError("x")
    assert logger.infos == []


def test_gather_elapsed_single_process() -> None:
    """Without a group the comparison is with itself."""
    times = mp.gather_elapsed(0.25)
    assert times == mp.RankTimes(0.25, 0.25, 0, 0.25, 0, 0.25, 1)


def test_setup_rejects_bad_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-positive timeout is refused before anything is initialised."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ValueError, match="timeout"):
        mp.setup_ddp(timeout=0)
    assert not dist.is_initialized()


# ---------------------------------------------------------------------------- real torchrun


@pytest.mark.ddp
def test_two_nodes_on_one_machine(tmp_path: Path) -> None:
    """Two torchrun "nodes" (1 process each, c10d rendezvous): ranks 0 and 1, one console copy."""
    port = free_port()
    common = (
        "--nnodes=2",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--rdzv-id=expmate-test",
    )
    launches: dict[int, LaunchResult] = {}

    def launch(node: int) -> None:
        launches[node] = torchrun(
            WORKERS / "logger_worker.py",
            str(tmp_path),
            "nodes",
            nproc=1,
            timeout=120,
            extra_torchrun_args=(*common, f"--node-rank={node}"),
        )

    threads = [threading.Thread(target=launch, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for node in (0, 1):
        assert launches[node].returncode == 0, launches[node].output
    results = [json.loads((tmp_path / f"result_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["setup"] for r in results] == [[0, 0, 2], [1, 0, 2]]
    assert sorted(r["group_rank"] for r in results) == ["0", "1"]
    console = launches[0].stdout + launches[1].stdout
    assert console.count("Rank 0: hello") == 1 and "Rank 1: hello" not in console
    assert "Rank 1: hello" in (tmp_path / "exp_rank1.log").read_text()
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1].startswith("0,val,loss,0.5,")
    record = json.loads((tmp_path / "run.json").read_text())
    assert [(r["rank"], r["local_rank"]) for r in record["ranks"]] == [(0, 0), (1, 0)]
    assert record["torchrun"]["group_world_size"] == 2


@pytest.mark.ddp
def test_restart_after_a_worker_dies(tmp_path: Path) -> None:
    """--max-restarts=1: rank 1 dies in attempt 0; attempt 1 re-forms the group and completes."""
    launch = torchrun(
        WORKERS / "logger_worker.py",
        str(tmp_path),
        "restart",
        timeout=150,
        extra_torchrun_args=("--max-restarts=1",),
    )
    assert launch.returncode == 0, launch.output
    results = [json.loads((tmp_path / f"result_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["attempt"] for r in results] == [1, 1]
    assert [r["setup"] for r in results] == [[0, 0, 2], [1, 1, 2]]
    last = (tmp_path / "metrics.csv").read_text().splitlines()[-1]
    assert last.startswith("5,train,loss,5.5,")
    assert "Restarted by torchrun (restart 1)" in (tmp_path / "exp.log").read_text()
    record = json.loads((tmp_path / "run.json").read_text())
    assert (record["status"], record["torchrun"]["restart_count"]) == ("finished", 1)
    (earlier,) = record["previous"]
    assert (earlier["torchrun"]["restart_count"], earlier["run_id"]) == (0, "restart")
    # The attempt recorded its end: rank 0's sync failed as rank 1 died, or torchrun's SIGTERM
    # (sent to stop the attempt) came first; which one wins is a race in torchrun.
    assert earlier["status"] in ("failed", "interrupted") and earlier["end_time"] is not None
