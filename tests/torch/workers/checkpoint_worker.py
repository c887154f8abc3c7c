"""Worker for tests/torch/test_checkpoint_ddp.py: CheckpointManager under torchrun (CPU, gloo).

Usage: checkpoint_worker.py RUN_DIR MODE, MODE one of:

- ``main``: a DDP model and optimizer; the best checkpoint by the global value while the ranks'
  own values disagree; retention over 10 saves; a monitor that is not reduced; a synchronous and
  an asynchronous save of one state; a corrupt checkpoint skipped; different steps on the ranks;
  an FSDP model saved in shards and resumed, synchronously and asynchronously; a rank that never
  calls save();
- ``resume``: run under ``--max-restarts=1``: attempt 0 trains without checkpoints (the reference),
  then with them and dies after step ``CRASH_AT``; attempt 1 resumes and finishes.

Each rank writes ``RUN_DIR/result_rank{r}[_attempt{a}].json`` with what it observed.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from expmate import ExperimentLogger
from expmate.torch import CheckpointManager, CheckpointSyncError, mp

# Each rank's own val/loss over 10 steps: rank 0 alone would call step 1 best, rank 1 alone step 5;
# their mean (the global value) is best at step 3 (1.5), then step 0 (4.0, tied with step 2).
LOCAL_VAL = (
    [4.0, 1.0, 6.0, 2.0, 7.0, 8.0, 6.0, 9.0, 9.0, 9.0],
    [4.0, 9.0, 2.0, 1.0, 7.0, 0.5, 7.0, 9.0, 9.0, 9.0],
)
STEPS = 8
CRASH_AT = 5  # attempt 0 dies after training this step; the last checkpoint is of step 4


class Net(torch.nn.Module):
    """A small MLP with dropout, so the torch generator matters to the losses."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(32, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def param_sum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def train_step(model: Any, optimizer: Any, scheduler: Any) -> float:
    """One step on a batch drawn from torch, numpy and Python generators (all must resume)."""
    x = torch.randn(16, 8) + float(np.random.normal()) + random.random()
    y = x.sum(dim=1, keepdim=True)
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def build(rank: int) -> tuple[Any, Any, Any]:
    """Seeded per rank (so generator states differ per rank); DDP makes the weights agree."""
    torch.manual_seed(100 + rank)
    np.random.seed(200 + rank)
    random.seed(300 + rank)
    model = DistributedDataParallel(Net())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer, scheduler


# ---------------------------------------------------------------------- main


def best_and_retention(run_dir: Path, logger: ExperimentLogger, rank: int) -> dict[str, Any]:
    model, optimizer, scheduler = build(rank)
    manager = CheckpointManager(logger=logger, monitor="val/loss", keep_last=3, keep_best=2)
    sums = []
    for step in range(10):
        train_step(model, optimizer, scheduler)
        logger.log_metric(step, "val", "loss", LOCAL_VAL[rank][step])
        manager.save(step, model=model, optimizer=optimizer, scheduler=scheduler, extra={"s": step})
        sums.append(param_sum(model))
    best = manager.load_best()
    assert best is not None
    fresh = Net()
    fresh.load_state_dict(best["model"])
    return {
        "best_step": manager.best_step,
        "latest_step": manager.latest_step,
        "listed": [(e["step"], e["file"], e["value"]) for e in manager.list()],
        "loaded_best": [best["step"], best["extra"], param_sum(fresh) == sums[best["step"]]],
        "sums": sums,
    }


def unreduced_monitor(run_dir: Path, logger: ExperimentLogger, rank: int) -> dict[str, Any]:
    model = Net()
    manager = CheckpointManager(
        run_dir / "local", logger=logger, monitor="val/local_loss", keep_last=1
    )
    logger.log_metric(0, "val", "local_loss", [0.5, 0.25][rank], reduce=None)
    manager.save(0, model=model)
    result = {"listed": [(e["step"], e["value"]) for e in manager.list()]}
    manager.close()
    return result


def sync_and_async(run_dir: Path, logger: ExperimentLogger, rank: int) -> None:
    model, optimizer, scheduler = build(rank)
    train_step(model, optimizer, scheduler)
    plain = CheckpointManager(run_dir / "sync", logger=logger)
    background = CheckpointManager(run_dir / "async", logger=logger, async_save=True)
    for manager in (plain, background):
        manager.save(7, model=model, optimizer=optimizer, scheduler=scheduler, extra=[1, 2])
    background.wait()
    plain.close()
    background.close()


def corrupt_and_steps(run_dir: Path, logger: ExperimentLogger, rank: int) -> dict[str, Any]:
    model, optimizer, scheduler = build(rank)
    manager = CheckpointManager(run_dir / "corrupt", logger=logger, keep_last=3)
    for step in range(3):
        train_step(model, optimizer, scheduler)
        manager.save(step, model=model, optimizer=optimizer)
    if rank == 0:
        target = manager.directory / "step_00000002.pt"
        size = target.stat().st_size
        target.write_bytes(b"\0" * size)  # same size, unreadable
    mp.barrier()
    loaded = manager.load_latest()
    result: dict[str, Any] = {"loaded": loaded["step"] if loaded else None}
    result["after_load"] = [e["step"] for e in manager.list()]
    manager.save(3, model=model)
    result["after_save"] = sorted(p.name for p in manager.directory.iterdir())
    try:
        manager.save(100 + rank, model=model)
    except ValueError as exc:
        result["steps_error"] = str(exc)
    result["after_error"] = sorted(p.name for p in manager.directory.iterdir())
    manager.close()
    return result


def sharded(run_dir: Path, logger: ExperimentLogger, rank: int) -> dict[str, Any]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (2,))
    torch.manual_seed(0)
    model = Net()
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    manager = CheckpointManager(run_dir / "sharded", logger=logger, keep_last=2)
    train_step(model, optimizer, scheduler)
    manager.save(1, model=model, optimizer=optimizer, scheduler=scheduler, extra="x")
    saved = {k: v.full_tensor().clone() for k, v in model.state_dict().items()}
    exp_avg = {k: s["exp_avg"].full_tensor().clone() for k, s in optimizer.state.items()}
    train_step(model, optimizer, scheduler)  # moves away from the saved state
    step = manager.resume(model, optimizer=optimizer, scheduler=scheduler)
    now = {k: v.full_tensor() for k, v in model.state_dict().items()}
    full = manager.load_latest()
    assert full is not None
    background = CheckpointManager(run_dir / "sharded_async", logger=logger, async_save=True)
    background.save(2, model=model, optimizer=optimizer)
    listed_before_wait = background.list()
    background.wait()
    result = {
        "resumed": step,
        "extra": manager.extra,
        "scheduler_epoch": scheduler.last_epoch,
        "params_restored": all(torch.equal(saved[k], now[k]) for k in saved),
        "moments_restored": all(
            torch.equal(exp_avg[p], optimizer.state[p]["exp_avg"].full_tensor()) for p in exp_avg
        ),
        "full_model": all(torch.equal(saved[k], full["model"][k]) for k in saved),
        "full_keys": sorted(full),
        "async_before_wait": len(listed_before_wait),
        "async_after_wait": [(e["step"], e["kind"]) for e in background.list()],
        "async_files": sorted(p.name for p in (background.directory / "step_00000002").iterdir()),
    }
    manager.close()
    background.close()
    return result


def missing_rank(run_dir: Path, logger: ExperimentLogger, rank: int) -> dict[str, Any]:
    """Rank 1 never calls save(): rank 0 fails within the manager's timeout, not a hang."""
    manager = CheckpointManager(run_dir / "missing", logger=logger, timeout=3)
    result: dict[str, Any] = {}
    if rank == 0:
        try:
            manager.save(0, model=Net())
        except CheckpointSyncError as exc:
            result["error"] = str(exc)[:200]
    manager.close(sync=False)
    return result


def main_mode(run_dir: Path, rank: int) -> dict[str, Any]:
    mp.setup_ddp("gloo", timeout=60)
    logger = ExperimentLogger(run_dir, run_id="ckpt", reduce="mean", console_output=False)
    result = {
        "best": best_and_retention(run_dir, logger, rank),
        "unreduced": unreduced_monitor(run_dir, logger, rank),
        "corrupt": corrupt_and_steps(run_dir, logger, rank),
        "sharded": sharded(run_dir, logger, rank),
    }
    sync_and_async(run_dir, logger, rank)
    result["missing"] = missing_rank(run_dir, logger, rank)
    logger.close()
    return result


# ---------------------------------------------------------------------- resume


def train(
    rank: int, manager: CheckpointManager | None, logger: ExperimentLogger, crash: Any = None
) -> dict[int, str]:
    """Train to ``STEPS`` (resuming through ``manager`` when given); step -> loss as hex.

    ``crash(losses)`` is called after step ``CRASH_AT``, then the process dies."""
    model, optimizer, scheduler = build(rank)
    start = 0
    if manager is not None:
        last = manager.resume(model, optimizer=optimizer, scheduler=scheduler)
        start = 0 if last is None else last + 1
    losses = {}
    for step in range(start, STEPS):
        loss = train_step(model, optimizer, scheduler)
        losses[step] = loss.hex()
        if manager is not None:
            logger.log_metric(step, "train", "loss", loss)
            if crash is not None and step == CRASH_AT:
                crash(losses)
                logger.flush()
                os._exit(1)  # killed between two checkpoints
            if step % 2 == 0:
                manager.save(step, model=model, optimizer=optimizer, scheduler=scheduler)
    return losses


def resume_mode(run_dir: Path, rank: int) -> dict[str, Any]:
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    mp.setup_ddp("gloo", timeout=60)
    logger = ExperimentLogger(run_dir, run_id="resume", reduce="mean", console_output=False)
    result: dict[str, Any] = {"attempt": attempt}
    if attempt == 0:
        result["reference"] = train(rank, None, logger)
    manager = CheckpointManager(logger=logger, keep_last=2)
    path = run_dir / f"result_rank{rank}_attempt{attempt}.json"
    result["latest_at_start"] = manager.latest_step

    def crash(losses: dict[int, str]) -> None:
        path.write_text(json.dumps({**result, "losses": losses}))

    result["losses"] = train(rank, manager, logger, crash if attempt == 0 else None)
    manager.close()
    logger.close()
    path.write_text(json.dumps(result))
    return result


def main() -> None:
    run_dir, mode = Path(sys.argv[1]), sys.argv[2]
    rank = int(os.environ.get("RANK", "0"))
    if mode == "main":
        result = main_mode(run_dir, rank)
        (run_dir / f"result_rank{rank}.json").write_text(json.dumps(result))
    else:
        resume_mode(run_dir, rank)
    mp.cleanup_ddp()


if __name__ == "__main__":
    main()
