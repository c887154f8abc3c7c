"""Worker for tests/torch/test_logger_async_ddp.py: the asynchronous reduction under torchrun.

Usage: async_worker.py OUT_DIR MODE, MODE one of:

- ``values``: exact values through the asynchronous path (sync_every=1) and a batched one
  (sync_every=3), ints that stay ints, get_best_metric waiting for what is in flight, close()
  with a collective in flight, a skipped step on rank 1 and the recovery after it, and ranks
  built with different settings (system_metrics on rank 0 only; sync_every 1 and 2);
- ``stop``: SIGTERM to rank 1 with stop signals on, should_stop() on both ranks; then rank 1
  stops logging and rank 0 must fail at its next sync point, naming rank 1;
- ``bruck`` (any number of ranks): the gloo transport's Bruck rounds against gloo's ring, and a
  reducer over them.

Each rank writes ``OUT_DIR/rank{r}.json`` with what it observed; the runs write their files in
``OUT_DIR/<name>``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from expmate import ExperimentLogger, run_end
from expmate.torch import MetricMismatchError, MetricReducer, SyncTimeoutError, mp
from expmate.torch.reduce import GlooTransport

SAMPLES = (30, 10)


def log_step(logger: ExperimentLogger, rank: int, step: int) -> None:
    """One step of metrics with every reduction: floats, ints, tensors."""
    logger.log_metric(step, "train", "loss", [1.0, 3.0][rank] + step, weight=SAMPLES[rank])
    logger.log_metric(step, "train", "samples", SAMPLES[rank], reduce="sum")
    logger.log_metric(step, "train", "tokens", torch.tensor(100 * step + rank), reduce="max")
    logger.log_metric(step, "train", "lr", [0.5, -0.5][rank] / (step + 1), reduce="min")
    logger.log_metric(step, "val", "loss", [2.0, 1.0][rank] + abs(step - 3), reduce="sum")


def async_run(out: Path, rank: int) -> dict[str, Any]:
    """sync_every=1: values, a best asked for while its step is in flight, close in flight."""
    logger = ExperimentLogger(out / "async", console_output=False, reduce="mean", sync_timeout=30)
    for step in range(6):
        log_step(logger, rank, step)
    # Step 4 went out with the first value of step 5: the best waits for it.
    best = logger.get_best_metric("loss", split="val")
    last = logger.get_last_metric("loss", split="val")
    logger.log_metric(6, "train", "loss", 1.0)  # step 5 goes out; close() finds it in flight
    logger.close()
    return {"best": best, "last": last}


def batched_run(out: Path, rank: int) -> dict[str, Any]:
    """sync_every=3: every step's row, one collective per window."""
    logger = ExperimentLogger(
        out / "batched", console_output=False, reduce="mean", sync_every=3, sync_timeout=30
    )
    for step in range(8):
        log_step(logger, rank, step)
    logger.flush()  # the windows 0-2, 3-5 and the partial 6-7 are on disk now
    counts = dict(logger._router._reduction.transport.counts)  # type: ignore[union-attr]
    logger.close()
    return {"counts": counts}


def skip_run(out: Path, rank: int) -> dict[str, Any]:
    """Rank 1 skips step 2: each rank raises once, the same error, and then agrees again."""
    logger = ExperimentLogger(out / "skip", console_output=False, reduce="mean", sync_timeout=30)
    raised = []
    for step in range(8):
        if rank == 1 and step == 2:
            continue
        try:
            logger.log_metric(step, "train", "loss", float(10 * step + rank))
        except MetricMismatchError as exc:
            raised.append([step, str(exc)])
    logger.close()
    return {"raised": raised}


def settings_run(out: Path, rank: int, name: str, **options: Any) -> dict[str, Any]:
    """A logger whose settings differ across ranks: what each call raises, and close()."""
    logger = ExperimentLogger(
        out / name, console_output=False, reduce="mean", sync_timeout=30, **options
    )
    raised = []
    for step in range(4):
        try:
            logger.log_metric(step, "train", "loss", float(step + rank))
        except MetricMismatchError as exc:
            raised.append([step, str(exc)])
    closed = None
    try:
        logger.close()
    except MetricMismatchError as exc:
        closed = str(exc)
    return {"raised": raised, "closed": closed}


def values_mode(out: Path, rank: int) -> dict[str, Any]:
    return {
        "async": async_run(out, rank),
        "batched": batched_run(out, rank),
        "skip": skip_run(out, rank),
        "system": settings_run(out, rank, "system", system_metrics=30 if rank == 0 else None),
        "every": settings_run(out, rank, "every", sync_every=1 + rank),
    }


def stop_run(out: Path, rank: int) -> dict[str, Any]:
    """SIGTERM to rank 1 at step 5: both ranks must see should_stop() at the same step."""
    logger = ExperimentLogger(
        out / "stop", console_output=False, reduce="mean", stop_signals=True, sync_timeout=30
    )
    stopped_at = None
    flushed = None
    for step in range(100):
        time.sleep(0.01)
        logger.log_metric(step, "train", "loss", float(step))
        logger.info(f"step {step}")
        if rank == 1 and step == 5:
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 5
            log = out / "stop" / "exp_rank1.log"
            while time.monotonic() < deadline and flushed is None:
                if log.exists() and "step 5" in log.read_text():
                    flushed = True
                time.sleep(0.01)
        if logger.should_stop():
            stopped_at = step
            (out / "stop" / f"checkpoint_rank{rank}.txt").write_text(str(step))
            break
    logger.close()
    return {"stopped_at": stopped_at, "signal": run_end.noted_signal(), "flushed": flushed}


def missing_run(out: Path, rank: int) -> dict[str, Any]:
    """Rank 1 stops logging after step 2: rank 0 fails one sync point later, naming it."""
    logger = ExperimentLogger(out / "missing", console_output=False, reduce="mean", sync_timeout=2)
    for step in range(3):
        logger.log_metric(step, "train", "loss", 1.0)
    if rank == 1:
        time.sleep(5.0)  # alive, but never at the sync point of step 2
        return {}
    start = time.monotonic()
    logger.log_metric(3, "train", "loss", 1.0)  # sends step 2 and returns at once
    sent = time.monotonic() - start
    try:
        logger.log_metric(4, "train", "loss", 1.0)
    except SyncTimeoutError as exc:
        return {"message": str(exc), "waited": time.monotonic() - start, "sent": sent}
    return {"message": None}


def stop_mode(out: Path, rank: int) -> dict[str, Any]:
    return {"stop": stop_run(out, rank), "missing": missing_run(out, rank)}


def bruck_mode(out: Path, rank: int) -> dict[str, Any]:
    """Bruck's rounds on real gloo give the ring's matrix; a reducer over them is exact."""
    bruck, ring = GlooTransport(30, bruck_from=2), GlooTransport(30, bruck_from=10**9)
    same = []
    for width in (1, 7, 40):
        row = torch.arange(width, dtype=torch.float64) + 1000 * rank
        same.append(torch.equal(bruck.all_gather(row).clone(), ring.all_gather(row).clone()))
    ring.close()
    seen: list[Any] = []
    reducer = MetricReducer(lambda *a: seen.append(list(a)), transport=bruck, sync_every=2)
    for step in range(5):
        reducer.add(step, "train", "loss", float(rank + step), "mean", float(rank + 1))
        reducer.add(step, "train", "n", rank, "sum", 1.0)
    reducer.close()
    return {"same": same, "seen": seen}


def main() -> None:
    out, mode = Path(sys.argv[1]), sys.argv[2]
    rank, _, _ = mp.setup_ddp("gloo", timeout=60)
    modes = {"values": values_mode, "stop": stop_mode, "bruck": bruck_mode}
    result = modes[mode](out, rank)
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    sys.stdout.flush()
    if mode == "stop":
        os._exit(0)  # the last group is broken on purpose: leave without tearing it down
    mp.cleanup_ddp()


if __name__ == "__main__":
    main()
