"""ExperimentLogger with metric values on a device, in one process: which flushes wait for the
device and which never do, and the order of the rows.

The device is a double (tests/fake_cuda.py): tensors that say they are not on the CPU take the
CUDA path of expmate.device_copy, and their copies complete when a test lets them or when
something waits for them (counted).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from expmate import ExperimentLogger
from expmate.metric_router import MAX_WAITING
from tests.fake_cuda import FakeCuda
from tests.helpers import lines_of, wait_until


class OnDevice(torch.Tensor):
    """A CPU tensor that says it is not on the CPU: the logger defers it as a device value."""

    @property
    def is_cpu(self) -> bool:  # type: ignore[override]
        return False


def on_device(value: float) -> torch.Tensor:
    return torch.tensor(value).as_subclass(OnDevice)


def device_logger(run_dir: Path, **kwargs: Any) -> tuple[ExperimentLogger, FakeCuda]:
    logger = ExperimentLogger(run_dir, console_output=False, **kwargs)
    calls = FakeCuda()
    logger._metrics.calls = calls
    return logger, calls


def rows(run_dir: Path) -> list[str]:
    """metrics.csv rows without wall_time ([] while the file does not exist)."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    return [line.rsplit(",", 1)[0] for line in lines_of(path)[1:]]


def test_forced_and_background_flushes_never_wait_for_the_device(tmp_path: Path) -> None:
    """A flush forced by a full buffer and the time-based flush start the copy and write no
    row behind it; once the copy has completed the next flush writes every row in the order
    logged, and best.json with them. Nothing waited."""
    logger, calls = device_logger(tmp_path, flush_interval=1000.0)
    logger.log_metric(step=0, split="train", name="loss", value=on_device(0.5))
    logger.log_metric(step=0, split="train", name="lr", value=0.1)
    for i in range(MAX_WAITING):  # the last one forces a flush
        logger.log_metric(step=1 + i, split="train", name="lr", value=0.1)
    assert len(calls.events) == 1  # the forced flush started the copy
    logger.flush_files(time.time(), wait_copies=False)  # what the background flusher does
    assert rows(tmp_path) == []
    assert not (tmp_path / "best.json").exists()
    calls.complete()
    logger.flush_files(time.time(), wait_copies=False)
    written = rows(tmp_path)
    assert written[:3] == ["0,train,loss,0.5", "0,train,lr,0.1", "1,train,lr,0.1"]
    assert len(written) == MAX_WAITING + 2
    assert json.loads((tmp_path / "best.json").read_text()) == {
        "train_loss": {"value": 0.5, "step": 0, "mode": "min"}
    }
    assert calls.waits == 0
    logger.close()


def test_the_flusher_thread_writes_device_rows_once_copied(tmp_path: Path) -> None:
    """The background flusher starts the copy, never waits, and writes the rows at a later
    flush once the copy has completed."""
    logger, calls = device_logger(tmp_path, flush_interval=0.05)
    logger.log_metric(step=3, split="val", name="loss", value=on_device(0.25))
    assert wait_until(lambda: len(calls.events) == 1)
    time.sleep(0.2)  # several flushes: the copy has not completed, nothing is written
    assert (rows(tmp_path), calls.waits) == ([], 0)
    calls.complete()
    assert wait_until(lambda: rows(tmp_path) == ["3,val,loss,0.25"])
    assert calls.waits == 0
    logger.close()


def test_flush_close_and_best_wait_for_the_device(tmp_path: Path) -> None:
    """get_best_metric, get_last_metric, flush() and close() wait for copies in flight."""
    logger, calls = device_logger(tmp_path, flush_interval=1000.0)
    logger.log_metric(step=0, split="val", name="loss", value=on_device(0.5))
    assert logger.get_best_metric("loss") == {"value": 0.5, "step": 0, "mode": "min"}
    logger.log_metric(step=1, split="val", name="loss", value=on_device(0.75))
    assert logger.get_last_metric("loss") == {"value": 0.75, "step": 1}
    logger.log_metric(step=2, split="val", name="loss", value=on_device(0.25))
    logger.flush()
    assert rows(tmp_path) == ["0,val,loss,0.5", "1,val,loss,0.75", "2,val,loss,0.25"]
    logger.log_metric(step=3, split="val", name="loss", value=on_device(0.125))
    logger.close()
    assert rows(tmp_path)[-1] == "3,val,loss,0.125"
    assert calls.waits == 4


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_cuda_values_in_one_process_make_no_sync(tmp_path: Path) -> None:
    """Real CUDA values: logging them and the flushes that do not wait (forced, background)
    make no synchronizing call; flush() then writes every value exact, in order."""
    logger = ExperimentLogger(tmp_path, console_output=False, flush_interval=1000.0)
    values = [torch.tensor(0.5, device="cuda") * i for i in range(MAX_WAITING + 10)]
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step, value in enumerate(values):  # a forced flush at MAX_WAITING
            logger.log_metric(step=step, split="train", name="loss", value=value)
        logger.flush_files(time.time(), wait_copies=False)
        logger.flush_files(time.time(), wait_copies=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    logger.flush()
    assert rows(tmp_path) == [f"{i},train,loss,{0.5 * i}" for i in range(MAX_WAITING + 10)]
    logger.close()
