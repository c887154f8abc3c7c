"""expmate.reduction: ride-along columns, the one-process reduction, the distributed registry."""

from __future__ import annotations

import re
import sys
import threading
from typing import Any

import pytest

from expmate import reduction
from expmate.reduction import Columns, LocalReduction


def test_local_reduction_emits_each_value_itself() -> None:
    """In one process a value is its own reduction, whatever the op and weight, emitted at once;
    sync points do nothing."""
    seen: list[Any] = []
    local = LocalReduction(lambda *a: seen.append(a))
    local.add(0, "val", "loss", 0.5, "mean", 0.0)
    local.add(0, "val", "n", 3, "sum", 1.0)
    for call in (local.sync, local.wait, local.close, local.abandon):
        call()
    assert seen == [(0, "val", "loss", 0.5), (0, "val", "n", 3)]


def test_columns_are_handed_straight_back_in_one_process() -> None:
    """Under LocalReduction each update calls on_reduced with every column's current value."""
    got: list[dict[str, float]] = []
    columns = Columns("system", {"cpu": "max", "samples": "sum"}, got.append)
    columns.update({"cpu": 3.0})  # not added yet: kept, not delivered
    LocalReduction(lambda *a: None).add_columns(columns)
    columns.update({"samples": 2})
    assert got == [{"cpu": 3.0, "samples": 2.0}]
    assert columns.current() == [3.0, 2.0]
    assert (columns.names, columns.ops) == (("cpu", "samples"), ("max", "sum"))


@pytest.mark.parametrize(
    ("args", "error", "named"),
    [
        (("", {"a": "max"}), ValueError, "''"),
        (("s", {}), ValueError, "at least one column"),
        (("s", {"a": "mean"}), ValueError, "'mean'"),
        (("s", {"": "max"}), ValueError, "''"),
    ],
)
def test_bad_columns_are_named(args: tuple[Any, Any], error: type, named: str) -> None:
    """A bad name, no columns or an op that is not max/min/sum raises, naming it."""
    with pytest.raises(error, match=re.escape(named)):
        Columns(*args, lambda values: None)


def test_bad_updates_are_named() -> None:
    """An undeclared column or a value that is not finite raises and changes nothing."""
    columns = Columns("s", {"a": "max"}, lambda values: None)
    with pytest.raises(ValueError, match="'b'"):
        columns.update({"b": 1.0})
    with pytest.raises(ValueError, match="inf"):
        columns.update({"a": float("inf")})
    with pytest.raises(TypeError, match="callable"):
        Columns("s", {"a": "max"}, None)  # type: ignore[arg-type]
    assert columns.current() == [0.0]
    pair = Columns("s", {"a": "max", "b": "max"}, lambda values: None)
    with pytest.raises(ValueError, match="'c'"):
        pair.update({"a": 5.0, "c": 1.0})  # a good value before the bad one is not kept
    with pytest.raises(ValueError, match="nan"):
        pair.update({"a": 5.0, "b": float("nan")})
    assert pair.current() == [0.0, 0.0]


def test_a_reader_sees_whole_updates() -> None:
    """What a collective sends (current()) is never half of one update and half of another,
    however the threads interleave."""
    columns = Columns("s", {"a": "max", "b": "max"}, lambda values: None)
    done = threading.Event()

    def updates() -> None:
        number = 0.0
        while not done.is_set():
            number += 1.0
            columns.update({"a": number, "b": number})

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    writer = threading.Thread(target=updates)
    writer.start()
    try:
        torn = sum(a != b for a, b in (columns.current() for _ in range(100_000)))
    finally:
        done.set()
        writer.join()
        sys.setswitchinterval(interval)
    assert columns.current()[0] > 0.0
    assert torn == 0


def test_distributed_reduction_needs_expmate_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a registered implementation the core says to import expmate.torch."""
    monkeypatch.setattr(reduction, "_distributed", None)
    with pytest.raises(RuntimeError, match=r"`import expmate\.torch`"):
        reduction.distributed_reduction(lambda *a: None, timeout=1.0, sync_every=1)
    calls: list[Any] = []
    reduction.register_distributed(lambda emit, **kw: calls.append(kw) or LocalReduction(emit))  # type: ignore[arg-type, func-returns-value]
    made = reduction.distributed_reduction(lambda *a: None, timeout=2.0, sync_every=3)
    assert isinstance(made, LocalReduction) and calls == [{"timeout": 2.0, "sync_every": 3}]
