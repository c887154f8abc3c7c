"""System metrics: samples at the interval into this rank's metrics file, GPU probes, bad input."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from expmate import ExperimentLogger
from expmate import system_metrics as sm
from expmate.metric_store import MetricStore
from tests.helpers import read_csv

MIB = float(1 << 20)


def system_rows(path: Path) -> list[list[str]]:
    return [row for row in read_csv(path)[1:] if row[1] == "system"]


def test_rows_appear_at_the_interval(tmp_path: Path) -> None:
    """With system_metrics=0.1 a sample (cpu_percent, rss_mib) is taken every 0.1 s, never early;
    close() stops the thread."""
    start = time.time()
    logger = ExperimentLogger(run_dir=tmp_path, console_output=False, system_metrics=0.1)
    time.sleep(0.75)
    logger.close()
    elapsed = time.time() - start
    rows = system_rows(tmp_path / "metrics.csv")
    samples = [rows[i : i + 2] for i in range(0, len(rows), 2)]
    assert 3 <= len(samples) <= int(elapsed / 0.1)
    for number, (cpu, rss) in enumerate(samples, start=1):
        assert [cpu[0], cpu[1], cpu[2], rss[0], rss[1], rss[2]] == [
            "0", "system", "cpu_percent", "0", "system", "rss_mib"
        ]  # fmt: skip
        assert cpu[4] == rss[4]  # one wall time per sample
        assert float(cpu[4]) >= start + number * 0.1 - 0.001  # never early (3-decimal times)
        assert float(cpu[3]) >= 0.0 and 1.0 < float(rss[3]) < 1e6
    assert not logger._system._thread.is_alive()
    time.sleep(0.25)
    assert system_rows(tmp_path / "metrics.csv") == rows


def test_each_rank_writes_its_own_file(tmp_path: Path) -> None:
    """A rank other than 0 records its samples in its own metrics file."""
    logger = ExperimentLogger(run_dir=tmp_path, rank=1, console_output=False, system_metrics=60)
    logger._system.sample()
    logger.close()
    assert [row[2] for row in system_rows(tmp_path / "metrics_rank1.csv")] == [
        "cpu_percent",
        "rss_mib",
    ]
    assert not (tmp_path / "metrics.csv").exists()


def test_step_is_the_latest_training_step(tmp_path: Path) -> None:
    """A sample's step is the latest step of the other metrics (0 before the first)."""
    store = MetricStore(tmp_path / "metrics.csv", None)
    sampler = sm.SystemMetrics(store, 3600.0, warn=print)
    sampler.sample()
    store.record(7, "train", "loss", 0.5, True, None, 1.0)
    sampler.sample()
    store.record(9, "val", "loss", 0.4, True, None, 2.0)
    sampler.sample()
    sampler.stop()
    ((_, lines),), _, _ = store.take()
    steps = [(line.split(",")[0], line.split(",")[2]) for line in lines if ",system," in line]
    assert steps == [(s, n) for s in ("0", "7", "9") for n in ("cpu_percent", "rss_mib")]


def test_without_psutil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """psutil missing: one warning in the run's log naming the extra; the run goes on."""
    monkeypatch.setitem(sys.modules, "psutil", None)
    logger = ExperimentLogger(run_dir=tmp_path, console_output=False, system_metrics=60)
    logger._system.sample()
    logger.log_metric(0, "val", "loss", 0.5)
    logger.close()
    assert [
        line.split(" - ", 2)[1:] for line in (tmp_path / "exp.log").read_text().splitlines()
    ] == [
        [
            "WARNING",
            "system_metrics: psutil is not installed, so process CPU and memory are not sampled "
            "(pip install 'expmate[system]')",
        ]
    ]
    assert [row[1:3] for row in read_csv(tmp_path / "metrics.csv")[1:]] == [["val", "loss"]]


class FakeCuda:
    """torch.cuda of a process on device 0 that also holds memory on device 1 (of 3)."""

    reserved: ClassVar[dict[int, float]] = {0: 512 * MIB, 1: 64 * MIB, 2: 0}

    def current_device(self) -> int:
        return 0

    def device_count(self) -> int:
        return 3

    def memory_reserved(self, index: int) -> float:
        return self.reserved[index]

    def memory_allocated(self, index: int) -> float:
        return self.reserved[index] / 2

    def get_device_properties(self, index: int) -> Any:
        return SimpleNamespace(uuid=f"uuid-{index}", name="Fake GPU", total_memory=80 * 2**30)


class FakeNvml:
    """pynvml's calls used, answering per UUID."""

    def __init__(self) -> None:
        self.shut = False

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        return uuid

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        return SimpleNamespace(gpu={"GPU-uuid-0": 97, "GPU-uuid-1": 3}[handle])

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        return SimpleNamespace(used={"GPU-uuid-0": 1024 * MIB, "GPU-uuid-1": 2048 * MIB}[handle])

    def nvmlShutdown(self) -> None:
        self.shut = True


def test_gpu_probe_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per device in use: nvml's utilisation and device memory, torch's allocator memory."""
    nvml = FakeNvml()
    monkeypatch.setattr(sm, "initialised_cuda", FakeCuda)
    monkeypatch.setattr(sm, "_start_nvml", lambda: nvml)
    probe = sm.GpuProbe()
    assert probe.sample() == [
        ("gpu0_util_percent", 97.0),
        ("gpu0_memory_used_mib", 1024.0),
        ("gpu0_allocated_mib", 256.0),
        ("gpu0_reserved_mib", 512.0),
        ("gpu1_util_percent", 3.0),
        ("gpu1_memory_used_mib", 2048.0),
        ("gpu1_allocated_mib", 32.0),
        ("gpu1_reserved_mib", 64.0),
    ]
    probe.close()
    assert nvml.shut


def test_gpu_probe_without_nvml_or_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without nvml: torch's memory only; without CUDA set up in the process: nothing."""
    monkeypatch.setattr(sm, "initialised_cuda", FakeCuda)
    monkeypatch.setattr(sm, "_start_nvml", lambda: False)
    assert sm.GpuProbe().sample() == [
        ("gpu0_allocated_mib", 256.0),
        ("gpu0_reserved_mib", 512.0),
        ("gpu1_allocated_mib", 32.0),
        ("gpu1_reserved_mib", 64.0),
    ]
    monkeypatch.setattr(sm, "initialised_cuda", lambda: None)
    assert sm.GpuProbe().sample() == []


def test_failing_probe_is_reported_once_and_dropped(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A probe that raises: one line on stderr; the other probes keep sampling."""

    class Broken:
        def sample(self) -> list[tuple[str, float]]:
            raise RuntimeError("driver gone")

    store = MetricStore(tmp_path / "metrics.csv", None)
    sampler = sm.SystemMetrics(store, 3600.0, warn=print)
    sampler._probes.append(Broken())
    sampler.sample()
    sampler.sample()
    sampler.stop()
    assert capfd.readouterr().err == (
        "expmate: sampling system metrics (Broken) failed (RuntimeError: driver gone); "
        "training continues, further failures of it are not reported\n"
    )
    ((_, lines),), _, _ = store.take()
    assert sum(",cpu_percent," in line for line in lines) == 2


@pytest.mark.parametrize("bad", [0, -1, True, "30", float("inf"), float("nan")])
def test_bad_interval_writes_nothing(tmp_path: Path, bad: Any) -> None:
    """system_metrics must be a positive number of seconds; a rejected logger creates nothing."""
    with pytest.raises(ValueError, match=r"system_metrics must be a positive number of seconds"):
        ExperimentLogger(run_dir=tmp_path / "run", system_metrics=bad)
    assert not (tmp_path / "run").exists()
