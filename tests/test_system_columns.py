"""System samples as ride-along columns: the fixed columns, and what a sampler writes where
when the logger reduces (one process: the one-process reduction hands each sample straight back)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

from expmate import system_metrics as sm
from expmate.metric_router import MetricRouter
from expmate.metric_store import MetricStore
from expmate.reduction import Columns
from expmate.system_columns import ABSENT, NAMES, SystemColumns, job_values
from tests.helpers import read_csv


class FixedProbe:
    """A probe answering a given list of samples, one per call."""

    def __init__(self, *samples: list[tuple[str, float]]) -> None:
        self.samples = list(samples)

    def sample(self) -> list[tuple[str, float]]:
        return self.samples.pop(0)


def one_process_router(store: MetricStore) -> MetricRouter:
    return MetricRouter(
        store,
        rank=0,
        world_size=1,
        default_reduce="mean",
        sync_timeout=10.0,
        sync_every=1,
        flush=lambda: None,
    )


def written(store: MetricStore) -> list[str]:
    """The rows a store holds for its file, as CSV lines."""
    batches, _, _ = store.take()
    return [line for _, lines in batches for line in lines]


def test_gpu_figures_fold_over_devices_and_missing_ones_are_absent() -> None:
    """Per-device figures become their maximum over the rank's devices; quantities not sampled,
    not finite or negative are ABSENT; unknown names are ignored."""
    sample = [
        ("cpu_percent", 12.5),
        ("gpu0_util_percent", 40.0),
        ("gpu0_reserved_mib", 512.0),
        ("gpu1_util_percent", 97.0),
        ("gpu1_reserved_mib", 64.0),
        ("gpu2_allocated_mib", math.nan),
        ("rss_mib", -3.0),
        ("fan_rpm", 900.0),
    ]
    assert job_values(sample) == {
        "cpu_percent": 12.5,
        "rss_mib": ABSENT,
        "gpu_util_percent": 97.0,
        "gpu_memory_used_mib": ABSENT,
        "gpu_allocated_mib": ABSENT,
        "gpu_reserved_mib": 512.0,
    }


def test_columns_are_fixed_and_a_counter_rides_along() -> None:
    """Every rank adds the same columns, all max: the quantities, the wall time, the counter."""
    added: list[tuple[str, dict[str, str]]] = []

    def add_columns(
        name: str, ops: Mapping[str, str], on_reduced: Callable[[dict[str, float]], None]
    ) -> Columns:
        added.append((name, dict(ops)))
        return Columns(name, ops, on_reduced)

    store = MetricStore(Path("unused.csv"), None)
    SystemColumns(add_columns, store, write=False, latest_step=lambda: 0)
    assert added == [("system", dict.fromkeys((*NAMES, "wall_time", "samples"), "max"))]


def test_rank0_under_reduction_writes_its_own_file_and_the_maxima(tmp_path: Path) -> None:
    """Rank 0 of a reducing logger: its own samples go to metrics_rank0.csv at once, each new
    sample's values (here its own, one rank) to metrics.csv with the latest training step and
    the sample's wall time; absent quantities give no row."""
    store = MetricStore(tmp_path / "metrics.csv", None)
    router = one_process_router(store)
    sampler = sm.SystemMetrics(store, 3600.0, print, across=router.add_columns, rank=0)
    sampler._probes = [
        FixedProbe(
            [("cpu_percent", 5.0), ("rss_mib", 100.0)],
            [("cpu_percent", 7.0), ("rss_mib", 101.0), ("gpu0_allocated_mib", 3.0)],
        )
    ]
    sampler.sample()
    router.log_metric(4, "train", "loss", 0.5, False, None, "mean", 1.0)
    sampler.sample()
    sampler.stop()
    own = read_csv(tmp_path / "metrics_rank0.csv")
    walls = [own[1][4], own[3][4]]
    assert own == [
        ["step", "split", "name", "value", "wall_time"],
        ["0", "system", "cpu_percent", "5.0", walls[0]],
        ["0", "system", "rss_mib", "100.0", walls[0]],
        ["4", "system", "cpu_percent", "7.0", walls[1]],
        ["4", "system", "rss_mib", "101.0", walls[1]],
        ["4", "system", "gpu0_allocated_mib", "3.0", walls[1]],
    ]
    loss_wall = f"{router._walls[4]:.3f}"
    assert written(store) == [
        f"0,system,cpu_percent,5.0,{walls[0]}\n",
        f"0,system,rss_mib,100.0,{walls[0]}\n",
        f"4,train,loss,0.5,{loss_wall}\n",
        f"4,system,cpu_percent,7.0,{walls[1]}\n",
        f"4,system,rss_mib,101.0,{walls[1]}\n",
        f"4,system,gpu_allocated_mib,3.0,{walls[1]}\n",
    ]
    assert store.get_last("system", "rss_mib") == {"value": 101.0, "step": 4}


def test_other_ranks_keep_their_samples_in_their_own_file(tmp_path: Path) -> None:
    """On a rank other than 0 the samples stay in its own file; no maxima are recorded there."""
    store = MetricStore(tmp_path / "metrics_rank1.csv", None)
    router = one_process_router(store)
    sampler = sm.SystemMetrics(store, 3600.0, print, across=router.add_columns, rank=1)
    sampler._probes = [FixedProbe([("cpu_percent", 5.0), ("rss_mib", 100.0)])]
    sampler.sample()
    sampler.stop()
    assert [line.rsplit(",", 1)[0] for line in written(store)] == [
        "0,system,cpu_percent,5.0",
        "0,system,rss_mib,100.0",
    ]
    assert not (tmp_path / "metrics_rank0.csv").exists()
