"""System metrics: this process's CPU and memory and its GPUs, sampled on a background thread.

Every ``interval`` seconds a daemon thread takes one sample and records it as metrics of split
``system`` in this rank's own metrics file (rank r > 0: ``metrics_rank{r}.csv``; rank 0:
``metrics.csv``, or ``metrics_rank0.csv`` when the logger reduces across ranks):

- ``cpu_percent``: this process's CPU use since the previous sample (100 = one core), and
  ``rss_mib``: its resident memory (psutil, the ``system`` extra);
- per CUDA device the process uses (only once torch has set CUDA up: see
  :mod:`expmate.cuda_devices`), ``gpu{i}_util_percent`` and ``gpu{i}_memory_used_mib`` of the
  whole device (nvidia-ml-py, when it is installed and the driver answers), and
  ``gpu{i}_allocated_mib`` and ``gpu{i}_reserved_mib`` of this process (torch's allocator).

A row's step is the latest step of the logger's other metrics (0 before the first), so the
samples line up with training; ``wall_time`` says when each was taken. Sampling never takes a
lock that training holds for long and never waits for the GPU; a probe that fails is reported once
and dropped. When the logger reduces across ranks, each sample also rides along the reduction's
collectives and rank 0 writes the maximum over ranks to ``metrics.csv``
(:mod:`expmate.system_columns`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from expmate.cuda_devices import initialised_cuda, used_devices
from expmate.metric_store import MetricStore
from expmate.sinks.base import report_failure
from expmate.system_columns import SPLIT, AddColumns, SystemColumns

RANK0_FILE = "metrics_rank0.csv"
"""Rank 0's own samples when ``metrics.csv`` holds the maxima over ranks."""
_MIB = float(1 << 20)

Sample = list[tuple[str, float]]


class ProcessProbe:
    """CPU percent and resident memory of this process (psutil)."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement

    def sample(self) -> Sample:
        with self._process.oneshot():
            cpu = float(self._process.cpu_percent(None))
            rss = self._process.memory_info().rss
        return [("cpu_percent", cpu), ("rss_mib", rss / _MIB)]


class GpuProbe:
    """Per CUDA device in use: nvml's device-wide utilisation and memory, torch's own memory."""

    def __init__(self) -> None:
        self._nvml: Any = None  # the pynvml module once initialised; False when unavailable
        self._handles: dict[int, Any] = {}

    def sample(self) -> Sample:
        cuda = initialised_cuda()
        if cuda is None:
            return []
        values: Sample = []
        for index in used_devices(cuda):
            prefix = f"gpu{index}_"
            handle = self._handle(cuda, index)
            if handle is not None:
                nvml = self._nvml
                util = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                values += [
                    (prefix + "util_percent", float(util.gpu)),
                    (prefix + "memory_used_mib", memory.used / _MIB),
                ]
            values += [
                (prefix + "allocated_mib", cuda.memory_allocated(index) / _MIB),
                (prefix + "reserved_mib", cuda.memory_reserved(index) / _MIB),
            ]
        return values

    def _handle(self, cuda: Any, index: int) -> Any:
        """nvml's handle of CUDA device ``index`` (matched by UUID), or None without nvml."""
        if index in self._handles:
            return self._handles[index]
        if self._nvml is None:
            self._nvml = _start_nvml()
        handle = None
        if self._nvml:
            try:
                handle = _nvml_handle(self._nvml, cuda, index)
            except Exception as exc:  # noqa: BLE001 - e.g. a MIG slice nvml cannot name
                report_failure(f"finding CUDA device {index} in nvml", exc)
        self._handles[index] = handle
        return handle

    def close(self) -> None:
        if self._nvml:
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:  # noqa: BLE001
                report_failure("shutting nvml down", exc)
        self._nvml = None
        self._handles.clear()


def _start_nvml() -> Any:
    """The initialised pynvml module (nvidia-ml-py), or False when it or the driver is missing."""
    try:
        import pynvml
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - pynvml.NVMLError: no driver, no library
        report_failure("starting nvml for GPU utilisation", exc)
        return False
    return pynvml


def _nvml_handle(nvml: Any, cuda: Any, index: int) -> Any:
    """nvml numbers all GPUs of the machine; CUDA only the visible ones, maybe reordered."""
    uuid = getattr(cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        text = str(uuid)
        if not text.startswith(("GPU-", "MIG-")):
            text = "GPU-" + text
        return nvml.nvmlDeviceGetHandleByUUID(text)
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v]
    physical = int(visible[index]) if index < len(visible) and visible[index].isdigit() else index
    return nvml.nvmlDeviceGetHandleByIndex(physical)


class SystemMetrics:
    """The sampling thread: one sample every ``interval`` seconds into ``store``.

    Args:
        store: the logger's metric store (this rank's own metrics file).
        interval: seconds between samples (the first is taken one interval after the start).
        warn: how to tell the user that a probe's library is missing (the logger's warning).
        across: the logger's ``add_columns`` when it reduces across ranks (every rank passes
            it, at construction): each sample then also rides along the collectives, rank 0
            records the maxima over ranks in ``store`` and its own samples in
            :data:`RANK0_FILE` beside it.
        rank: this process's global rank.
    """

    def __init__(
        self,
        store: MetricStore,
        interval: float,
        warn: Callable[[str], None],
        *,
        across: AddColumns | None = None,
        rank: int = 0,
    ) -> None:
        self._store = store
        self.interval = interval
        self._probes: list[Any] = [GpuProbe()]
        try:
            self._probes.insert(0, ProcessProbe())
        except ImportError:
            warn(
                "system_metrics: psutil is not installed, so process CPU and memory are not "
                "sampled (pip install 'expmate[system]')"
            )
        self._own: set[str] = set()  # the MetricStore keys written here
        self._rows = store  # where this rank's own samples go
        self._job: SystemColumns | None = None
        if across is not None:
            self._job = SystemColumns(across, store, write=rank == 0, latest_step=self._latest_step)
            if rank == 0:
                self._rows = MetricStore(store.rows_path().with_name(RANK0_FILE), None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="expmate-system", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        slot = 1
        while not self._stop.wait(max(0.0, start + slot * self.interval - time.monotonic())):
            self.sample()
            # A late sample (a suspended process, a loaded machine) skips the slots it missed.
            slot = max(slot + 1, int((time.monotonic() - start) / self.interval) + 1)

    def sample(self) -> None:
        """Take one sample now and record it (called by the thread)."""
        wall = time.time()
        values: Sample = []
        for probe in list(self._probes):
            try:
                values += probe.sample()
            except Exception as exc:  # noqa: BLE001 - a broken probe must not stop the others
                report_failure(f"sampling system metrics ({type(probe).__name__})", exc)
                self._probes.remove(probe)
        step = self._latest_step()
        rows = self._rows
        for name, value in values:
            self._own.add(f"{SPLIT}_{name}")
            rows.record(step, SPLIT, name, value, False, None, wall)
        if rows is not self._store:  # a file of this thread's own: written at once
            batches, _, _ = rows.take()
            rows.write(batches, None)
        if self._job is not None:
            self._job.update(values, wall)

    def _latest_step(self) -> int:
        with self._store.lock:
            steps = [entry[1] for key, entry in self._store.last.items() if key not in self._own]
        return max(steps, default=0)

    def stop(self) -> None:
        """Stop sampling (waits for a sample in progress); calling it again does nothing."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        for probe in self._probes:
            if isinstance(probe, GpuProbe):
                probe.close()
        if self._rows is not self._store:
            self._rows.close()
