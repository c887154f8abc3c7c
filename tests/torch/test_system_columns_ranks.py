"""The maxima of system samples across ranks, over the asynchronous reducer (in-memory ranks)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from expmate.metric_store import MetricStore
from expmate.reduction import Columns
from expmate.system_columns import SystemColumns
from expmate.torch.reduce import MetricReducer
from tests.torch.thread_ranks import run_ranks

SAMPLES = {  # rank -> its samples, in order (rank 1: more GPUs, and no psutil for sample 2)
    0: [
        [("cpu_percent", 50.0), ("rss_mib", 100.0), ("gpu0_util_percent", 10.0)],
        [("cpu_percent", 60.0), ("rss_mib", 110.0), ("gpu0_util_percent", 95.0)],
    ],
    1: [
        [
            ("cpu_percent", 20.0),
            ("rss_mib", 300.0),
            ("gpu0_util_percent", 30.0),
            ("gpu1_util_percent", 90.0),
            ("gpu1_reserved_mib", 64.0),
        ],
        [("gpu0_util_percent", 40.0), ("gpu1_util_percent", 5.0), ("gpu1_reserved_mib", 32.0)],
    ],
}


def adder(reducer: MetricReducer) -> Callable[..., Columns]:
    """``add_columns`` as the logger's router offers it, over a bare reducer."""

    def add_columns(
        name: str, ops: Mapping[str, str], on_reduced: Callable[[dict[str, float]], None]
    ) -> Columns:
        columns = Columns(name, ops, on_reduced)
        reducer.add_columns(columns)
        return columns

    return add_columns


def test_rank0_writes_the_maxima_of_each_new_sample_once(tmp_path: Path) -> None:
    """Two ranks with different GPU counts: each new sample counter gives one set of rows on
    rank 0 (max over ranks and GPUs, the step of the latest reduced metric, the newer sample's
    wall time), none for a sync without a new sample, and none on rank 1."""
    stores = {r: MetricStore(tmp_path / f"metrics_{r}.csv", None) for r in (0, 1)}

    def body(rank: int, reducer: MetricReducer) -> None:
        seen = reducer.seen  # type: ignore[attr-defined]
        system = SystemColumns(
            adder(reducer),
            stores[rank],
            write=rank == 0,
            latest_step=lambda: seen[-1][0] if seen else 0,
        )
        reducer.add(0, "train", "loss", 1.0, "mean", 1.0)
        system.update(SAMPLES[rank][0], wall=1000.0 + rank)
        reducer.add(1, "train", "loss", 1.0, "mean", 1.0)  # sends step 0 and sample 1
        reducer.add(2, "train", "loss", 1.0, "mean", 1.0)  # sample 1 back; sends sample 1 again
        reducer.add(3, "train", "loss", 1.0, "mean", 1.0)  # sample 1 again: nothing new
        system.update(SAMPLES[rank][1], wall=2000.0 - rank)
        reducer.add(4, "train", "loss", 1.0, "mean", 1.0)  # sends step 3 and sample 2
        reducer.close()  # sample 2 back, at step 3

    results = run_ranks(2, body)
    assert [r["error"] for r in results] == [None, None]
    lines = {r: [line for _, part in s.take()[0] for line in part] for r, s in stores.items()}
    assert lines[0] == [
        "0,system,cpu_percent,50.0,1001.000\n",
        "0,system,rss_mib,300.0,1001.000\n",
        "0,system,gpu_util_percent,90.0,1001.000\n",
        "0,system,gpu_reserved_mib,64.0,1001.000\n",
        "3,system,cpu_percent,60.0,2000.000\n",
        "3,system,rss_mib,110.0,2000.000\n",
        "3,system,gpu_util_percent,95.0,2000.000\n",
        "3,system,gpu_reserved_mib,32.0,2000.000\n",
    ]
    assert lines[1] == []
    assert (
        results[0]["transport"].calls.count("all_gather") == 1 + 5
    )  # the settings once; none of its own
