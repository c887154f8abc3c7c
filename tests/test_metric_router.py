"""expmate.metric_router: where a value goes, validation on the reduced path, reduced rows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from expmate import metric_router
from expmate.metric_router import DEFAULT, MetricRouter
from expmate.metric_store import MetricStore
from tests.helpers import lines_of, make_logger


class HeldReduction:
    """A reduction that keeps what it is given and emits it when told (as a later sync would)."""

    def __init__(self) -> None:
        self.added: list[tuple[Any, ...]] = []
        self.columns: list[Any] = []

    def add(self, step: int, split: str, name: str, value: Any, op: str, weight: float) -> None:
        self.added.append((step, split, name, value, op, weight))

    def add_columns(self, columns: Any) -> None:
        self.columns.append(columns)

    def wait(self) -> None:
        self.waited = True


def router_for(tmp_path: Path, *, rank: int = 0, world: int = 2) -> MetricRouter:
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = MetricStore(tmp_path / "metrics.csv", tmp_path / "best.json")
    return MetricRouter(
        store,
        rank=rank,
        world_size=world,
        default_reduce="mean",
        sync_timeout=5.0,
        sync_every=1,
        flush=lambda: None,
    )


@pytest.mark.parametrize(
    ("split", "error", "named"),
    [(["a"], TypeError, "['a']"), ("", ValueError, "split must not be empty"), (3, TypeError, "3")],
)
def test_bad_split_on_the_reduced_path_is_named(
    tmp_path: Path, split: Any, error: type, named: str
) -> None:
    """A reduced value with a bad split raises at once, naming it, and nothing is written."""
    logger, _ = make_logger(tmp_path, reduce="mean")
    with pytest.raises(error, match=re.escape(named)):
        logger.log_metric(0, split, "loss", 1.0)
    logger.close()
    assert not (tmp_path / "metrics.csv").exists()


def test_reduced_in_one_process_is_the_value_itself(tmp_path: Path) -> None:
    """One process: a reduced value is written as logged (an int stays an int), at once."""
    logger, _ = make_logger(tmp_path, reduce="sum")
    logger.log_metric(0, "train", "samples", 4096)
    logger.log_metric(0, "train", "loss", 0.25, reduce="mean", weight=0.0)
    assert logger.get_last_metric("samples", split="train") == {"value": 4096, "step": 0}
    logger.close()
    assert [line.split(",")[:4] for line in lines_of(tmp_path / "metrics.csv")[1:]] == [
        ["0", "train", "samples", "4096"],
        ["0", "train", "loss", "0.25"],
    ]


def test_reduced_rows_carry_the_time_of_their_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reduced value emitted later is written with the wall time of its step's first value,
    by rank 0 only; its best and last are tracked on every rank."""
    now = [1000.0]
    monkeypatch.setattr(metric_router, "time", type("Clock", (), {"time": lambda: now[0]}))
    for rank in (0, 1):
        router = router_for(tmp_path / str(rank), rank=rank)
        held = HeldReduction()
        router._reduction = held
        router.log_metric(3, "val", "loss", 0.5, True, None, DEFAULT, 2.0)
        now[0] = 1005.0
        router.log_metric(3, "val", "acc", 0.75, True, None, DEFAULT, 2.0)
        assert [a[:4] for a in held.added] == [(3, "val", "loss", 0.5), (3, "val", "acc", 0.75)]
        now[0] = 1010.0
        router._emit(3, "val", "loss", 0.375)  # as the reduction does, a sync point later
        assert router.get_last("val", "loss") == {"value": 0.375, "step": 3}
        assert held.waited  # a reduced metric waits for what is in flight
        assert router.get_best("val", "loss") == {"value": 0.375, "step": 3, "mode": "min"}
        batches, _, _ = router._store.take()
        rows = [line for _, lines in batches for line in lines if not line.startswith("step,")]
        assert rows == (["3,val,loss,0.375,1000.000\n"] if rank == 0 else [])
