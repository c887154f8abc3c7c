"""Tests for expmate.run_id: fresh ids, and one id shared by every rank of a torchrun job."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from expmate.run_id import new_run_id, shared_run_id
from tests.ddp_launch import torchrun

RUN_ID = re.compile(r"^\d{8}_\d{6}_[0-9a-f]{6}$")


def test_new_run_id_is_timestamp_and_hex_suffix() -> None:
    """A new id is YYYYmmdd_HHMMSS_ followed by six hex digits."""
    assert RUN_ID.match(new_run_id())


def test_new_run_ids_differ_within_one_second() -> None:
    """Ids made in the same second still differ, thanks to the random suffix."""
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) == 200


def test_single_process_keeps_candidate() -> None:
    """Without torchrun the candidate is the id."""
    assert shared_run_id("abc") == "abc"


def test_single_process_generates_without_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torchrun and without a candidate a new id is generated."""
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert RUN_ID.match(shared_run_id())


def test_elastic_run_id_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several ranks but no store address: every rank derives the id from TORCHELASTIC_RUN_ID."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job 42/a")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert shared_run_id() == "job_42_a"


def test_elastic_run_id_none_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """TORCHELASTIC_RUN_ID=none (static rendezvous) gives no id; a new one is generated."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert RUN_ID.match(shared_run_id())


_WORKER = textwrap.dedent(
    """
    import json, os
    from expmate.config import parse_config
    from expmate.run_id import shared_run_id

    rank = int(os.environ["RANK"])
    before = shared_run_id()                       # store path, no process group yet
    candidate = shared_run_id(f"cand{rank}")       # rank 0's candidate wins
    config = parse_config(["training.epochs=2"], defaults={"training": {"epochs": 1}})
    import torch.distributed as dist
    dist.init_process_group("gloo")
    after = shared_run_id()                        # broadcast over the process group
    with open(f"rank{rank}.json", "w") as out:
        json.dump({
            "before": before, "candidate": candidate, "config": config.run_id,
            "after": after, "agent_store": os.environ.get("TORCHELASTIC_USE_AGENT_STORE"),
        }, out)
    dist.barrier()
    dist.destroy_process_group()
    """
)


def _read(path: Path) -> dict[str, str]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@pytest.mark.ddp
@pytest.mark.parametrize("share_store", ["0", "1"], ids=["agent-store", "rank0-store"])
def test_all_ranks_share_one_id(tmp_path: Path, share_store: str) -> None:
    """Before and after init_process_group, every rank gets rank 0's id (both store modes)."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    result = torchrun(
        script,
        nproc=2,
        timeout=60,
        cwd=tmp_path,
        env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": share_store},
        extra_torchrun_args=("--standalone",),
    )
    assert result.returncode == 0, result.output
    rank0, rank1 = _read(tmp_path / "rank0.json"), _read(tmp_path / "rank1.json")
    assert rank0["agent_store"] == ("True" if share_store == "0" else "False")
    assert RUN_ID.match(rank0["before"])
    assert RUN_ID.match(rank0["config"])
    assert RUN_ID.match(rank0["after"])
    assert rank0["candidate"] == "cand0"
    assert len({rank0["before"], rank0["config"], rank0["after"]}) == 3
    for key in ("before", "candidate", "config", "after"):
        assert rank1[key] == rank0[key]


_RESTARTING_WORKER = textwrap.dedent(
    """
    import os, sys
    from expmate.run_id import shared_run_id

    run_id = shared_run_id()
    attempt = os.environ["TORCHELASTIC_RESTART_COUNT"]
    with open(f"attempt{attempt}_rank{os.environ['RANK']}.txt", "w") as out:
        out.write(run_id)
    if attempt == "0":
        sys.exit(3)
    """
)


@pytest.mark.ddp
def test_restarted_job_keeps_its_id(tmp_path: Path) -> None:
    """After a torchrun restart (--max-restarts) every rank gets the id of the first attempt."""
    script = tmp_path / "worker.py"
    script.write_text(_RESTARTING_WORKER)
    result = torchrun(
        script, nproc=2, timeout=60, cwd=tmp_path, extra_torchrun_args=("--max-restarts=1",)
    )
    assert result.returncode == 0, result.output
    names = sorted(path.name for path in tmp_path.glob("attempt*"))
    assert names == [
        "attempt0_rank0.txt",
        "attempt0_rank1.txt",
        "attempt1_rank0.txt",
        "attempt1_rank1.txt",
    ]
    ids = {(tmp_path / name).read_text() for name in names}
    assert len(ids) == 1
    assert RUN_ID.match(ids.pop())
