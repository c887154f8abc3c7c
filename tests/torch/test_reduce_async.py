"""MetricReducer off the training thread: when values come out, batches, recovery, ints, columns.

In-memory ranks (one thread each, tests/torch/thread_ranks.py); real gloo runs are in
test_reduce.py and test_logger_async_ddp.py.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest
import torch

from expmate.reduction import Columns
from expmate.torch import _transport
from expmate.torch.reduce import (
    LocalTransport,
    MetricMismatchError,
    MetricReducer,
    SyncTimeoutError,
)
from tests.helpers import wait_until
from tests.torch.thread_ranks import run_ranks


def steps_of(seen: list[Any]) -> list[Any]:
    """The distinct steps emitted, in order."""
    out: list[Any] = []
    for step, *_ in seen:
        if not out or out[-1] != step:
            out.append(step)
    return out


def test_values_come_out_when_ready_without_the_training_thread() -> None:
    """A step's values are emitted by the reducer's thread as soon as its collective completes:
    the adding thread does nothing more and waits for nothing."""
    seen_by: dict[int, list[Any]] = {}

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(0, "train", "loss", 1.0 + rank, "mean", 1.0)
        start = time.monotonic()
        reducer.add(1, "train", "loss", 3.0 + rank, "mean", 1.0)  # sends step 0, returns
        seen_by[rank] = [time.monotonic() - start, list(reducer.seen)]  # type: ignore[attr-defined]
        wait_until(lambda: bool(reducer.seen), timeout=10)  # type: ignore[attr-defined]
        seen_by[rank].append(list(reducer.seen))  # type: ignore[attr-defined]
        reducer.add(2, "train", "loss", 5.0 + rank, "mean", 1.0)
        reducer.close()

    results = run_ranks(2, body)
    for rank in (0, 1):
        returned_after, before, after = seen_by[rank]
        assert before == [] and after == [(0, "train", "loss", 1.5)]
        assert returned_after < 1.0
    assert results[0]["seen"] == [
        (0, "train", "loss", 1.5),
        (1, "train", "loss", 3.5),
        (2, "train", "loss", 5.5),
    ]


def test_blocking_emits_at_the_same_sync_point() -> None:
    """blocking=True (the old path) waits for each collective where it is made."""
    snapshots: dict[int, list[Any]] = {}

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(0, "train", "loss", 1.0 + rank, "mean", 1.0)
        reducer.add(1, "train", "loss", 3.0 + rank, "mean", 1.0)
        snapshots[rank] = list(reducer.seen)  # type: ignore[attr-defined]
        reducer.close()

    run_ranks(2, body, blocking=True)
    assert snapshots[0] == snapshots[1] == [(0, "train", "loss", 1.5)]


def test_batched_windows_reduce_every_step_exactly() -> None:
    """sync_every=4: one all_gather per 4 steps, a row for every step, exact weighted means,
    sums, mins and maxes; steps skipped by every rank are simply absent."""

    def body(rank: int, reducer: MetricReducer) -> None:
        for step in [0, 1, 2, 3, 4, 5, 7, 8, 9]:
            reducer.add(step, "train", "loss", float(step + 2 * rank), "mean", [3.0, 1.0][rank])
            reducer.add(step, "train", "n", step + rank, "sum", 1.0)
            reducer.add(step, "train", "lo", float(rank - step), "min", 1.0)
            reducer.add(step, "train", "hi", float(rank * step), "max", 1.0)
        reducer.close()

    results = run_ranks(2, body, sync_every=4)
    expected = []
    for step in [0, 1, 2, 3, 4, 5, 7, 8, 9]:
        expected += [
            (step, "train", "loss", (3.0 * step + (step + 2.0)) / 4.0),
            (step, "train", "n", 2 * step + 1),
            (step, "train", "lo", float(-step)),
            (step, "train", "hi", float(step)),
        ]
    assert results[0]["seen"] == results[1]["seen"] == expected
    calls = results[0]["transport"].calls
    assert calls.count("all_gather") == 1 + 3  # the settings once; windows 0-3, 4-7, 8-11
    assert calls.count("all_gather_object") == 1  # the key set, agreed once


def test_sum_min_max_of_ints_stay_ints() -> None:
    """Integers on every rank stay ints through sum, min and max (Python and integer tensors);
    a float on any rank, or a mean, gives a float."""

    def body(rank: int, reducer: MetricReducer) -> None:
        for step in range(2):
            reducer.add(step, "t", "samples", 2048 + rank, "sum", 1.0)
            reducer.add(step, "t", "tokens", torch.tensor(7 + rank), "max", 1.0)
            reducer.add(
                step, "t", "least", torch.tensor([3, 4][rank], dtype=torch.int32), "min", 1.0
            )
            reducer.add(step, "t", "mixed", [5, 5.0][rank], "sum", 1.0)
            reducer.add(step, "t", "avg", 4, "mean", 1.0)
        reducer.close()

    results = run_ranks(2, body)
    seen = results[0]["seen"]
    assert seen == results[1]["seen"]
    assert [(name, value, type(value).__name__) for _, _, name, value in seen[:5]] == [
        ("samples", 4097, "int"),
        ("tokens", 8, "int"),
        ("least", 3, "int"),
        ("mixed", 10.0, "float"),
        ("avg", 4.0, "float"),
    ]
    assert [type(value) for *_, value in seen[5:]] == [int, int, int, float, float]


def test_mismatch_in_one_step_of_a_batch() -> None:
    """A metric missing on one rank for one step of a window fails that step only, on every
    rank, at the next sync point, naming the step; the window's other steps are written."""

    def body(rank: int, reducer: MetricReducer) -> None:
        for step in range(6):
            reducer.add(step, "train", "loss", float(rank), "mean", 1.0)
            if step == 2 and rank == 0:
                reducer.add(step, "val", "acc", 1.0, "mean", 1.0)
        reducer.close()  # sends window 1 and collects window 0: raises

    results = run_ranks(2, body, sync_every=3)
    errors = [r["error"] for r in results]
    assert all(isinstance(e, MetricMismatchError) for e in errors)
    assert str(errors[0]) == str(errors[1])
    first, *lines = str(errors[0]).split("\n")
    assert first.startswith("ranks logged different metrics for step 2;")
    assert first.endswith("The values of that step were discarded.")
    assert lines == ["  step 2: val/acc: logged by ranks [0], missing on ranks [1]"]
    assert steps_of(results[0]["seen"]) == [0, 1, 3, 4, 5]


def test_two_failed_sync_points_in_one_call_are_both_reported() -> None:
    """sync() that collects a failed window and fails its own reports both steps, alike."""

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(5, "train", "acc", 0.5, ["mean", "max"][rank], 1.0)
        if rank == 0:
            reducer.add(5, "val", "extra_loss", 1.0, "mean", 1.0)
        reducer.add(6, "train", "acc", 0.5, ["mean", "max"][rank], 1.0)  # sends step 5
        reducer.sync()  # collects step 5, sends and collects step 6

    results = run_ranks(2, body)
    message = str(results[0]["error"])
    assert message == str(results[1]["error"])
    assert [line for line in message.split("\n") if not line.startswith("  ")] == [
        line.replace("{step}", str(step))
        for step in (5, 6)
        for line in [
            "ranks logged different metrics for step {step}; every rank must log the same "
            "metrics (split, name and reduce op) for a step and reach sync()/flush()/close() at "
            "the same points. The values of that step were discarded."
        ]
    ]
    assert "  val/extra_loss: logged by ranks [0], missing on ranks [1]" in message


def test_a_skipped_step_is_recovered_from() -> None:
    """Rank 1 skips step 2 entirely: both ranks raise the same error once (at their own next
    sync point), the rank behind drops its step 3, and every later step agrees again."""
    raised: dict[int, list[tuple[int, str]]] = {0: [], 1: []}

    def body(rank: int, reducer: MetricReducer) -> None:
        for step in range(9):
            if step == 2 and rank == 1:
                continue
            try:
                reducer.add(step, "train", "loss", float(10 * step + rank), "mean", 1.0)
            except MetricMismatchError as exc:
                raised[rank].append((step, str(exc)))
        reducer.close()

    results = run_ranks(2, body)
    assert [r["error"] for r in results] == [None, None]
    assert [step for step, _ in raised[0]] == [4]
    assert [step for step, _ in raised[1]] == [5]
    message = raised[0][0][1]
    assert message == raised[1][0][1]
    assert message.split("\n")[1:] == [
        "  different steps: step 2 on ranks [0]; step 3 on ranks [1]",
        "  ranks [0] discard their metrics up to step 3, so that the next sync point agrees again",
    ]
    assert message.startswith("ranks logged different metrics for steps 2, 3;")
    # The value given to the call that raised (step 4 on rank 0) was kept and reduced.
    assert results[0]["seen"] == results[1]["seen"]
    assert results[0]["seen"] == [
        (s, "train", "loss", 10.0 * s + 0.5) for s in (0, 1, 4, 5, 6, 7, 8)
    ]


def test_a_skipped_window_is_recovered_from() -> None:
    """With sync_every=3 a rank that skips a whole window catches up at the next one."""
    raised: dict[int, list[str]] = {0: [], 1: []}

    def body(rank: int, reducer: MetricReducer) -> None:
        for step in range(15):
            if rank == 1 and 3 <= step < 6:
                continue
            try:
                reducer.add(step, "train", "loss", float(rank), "mean", 1.0)
            except MetricMismatchError as exc:
                raised[rank].append(str(exc))
        reducer.close()

    results = run_ranks(2, body, sync_every=3)
    assert [r["error"] for r in results] == [None, None]
    assert len(raised[0]) == len(raised[1]) == 1 and raised[0] == raised[1]
    assert raised[0][0].startswith("ranks logged different metrics for steps 3 to 8 (6 steps);")
    assert raised[0][0].endswith(
        "ranks [0] discard their metrics up to step 8, so that the next sync point agrees again"
    )
    assert results[0]["seen"] == results[1]["seen"]
    assert steps_of(results[0]["seen"]) == [0, 1, 2, 9, 10, 11, 12, 13, 14]


def test_a_rank_that_closes_early_ends_the_reduction_alike() -> None:
    """Rank 1 closes after step 3 while rank 0 goes on: step 3 still agrees, then both get the
    same error (no timeout), and rank 0's later values are refused with it."""
    later: dict[str, Any] = {}

    def body(rank: int, reducer: MetricReducer) -> None:
        last = 3 if rank == 1 else 5
        try:
            for step in range(last + 1):
                reducer.add(step, "train", "loss", 1.0, "mean", 1.0)
            reducer.close()
        except MetricMismatchError:
            if rank == 0:
                with pytest.raises(MetricMismatchError) as again:
                    reducer.add(9, "train", "loss", 1.0, "mean", 1.0)
                later["again"] = str(again.value)
                reducer.close()
            raise

    start = time.monotonic()
    results = run_ranks(2, body, timeout=30)
    assert time.monotonic() - start < 10
    errors = [str(r["error"]) for r in results]
    assert errors[0] == errors[1] == later["again"]
    assert errors[0].startswith("ranks did not reach the same sync points; ")
    assert errors[0].split("\n")[1:] == [
        "  ranks [1] closed their logger (the final sync of close()) while ranks [0] did not: "
        "no more metrics can be reduced in this job"
    ]
    assert steps_of(results[0]["seen"]) == steps_of(results[1]["seen"]) == [0, 1, 2, 3]


def test_missing_rank_is_named_at_the_next_sync_point() -> None:
    """Rank 2 stops logging: ranks 0 and 1 raise SyncTimeoutError at the sync point after the
    one that failed, naming rank 2 and the failed step, about one timeout after sending it."""
    timing: dict[int, float] = {}

    def body(rank: int, reducer: MetricReducer) -> None:
        for step in range(3):
            reducer.add(step, "train", "loss", 1.0, "mean", 1.0)
        if rank == 2:
            return  # never sends step 2
        reducer.add(3, "train", "loss", 1.0, "mean", 1.0)  # sends step 2: returns at once
        start = time.monotonic()
        try:
            reducer.add(4, "train", "loss", 1.0, "mean", 1.0)
        finally:
            timing[rank] = time.monotonic() - start

    results = run_ranks(3, body, timeout=1.0, board=True)
    for rank in (0, 1):
        error = results[rank]["error"]
        assert isinstance(error, SyncTimeoutError)
        assert str(error).startswith(
            f"metric sync on rank {rank} failed at step 2 (pending metrics: train/loss): "
            "ranks [2] did not reach the sync point within 1s or left the job."
        )
        assert 0.3 < timing[rank] < 5.0
        with pytest.raises(SyncTimeoutError, match="an earlier metric sync failed"):
            results[rank]["reducer"].add(5, "train", "loss", 1.0, "mean", 1.0)
    assert results[2]["error"] is None


def test_value_of_the_raising_call_is_kept() -> None:
    """The add() that raises an earlier step's mismatch still buffers its own value."""

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(0, "train", "loss", 1.0, "mean", 1.0)
        if rank == 0:
            reducer.add(0, "train", "extra", 1.0, "mean", 1.0)
        reducer.add(1, "train", "loss", 2.0 + rank, "mean", 1.0)
        with pytest.raises(MetricMismatchError):
            reducer.add(2, "train", "loss", 4.0 + rank, "mean", 1.0)
        reducer.close()

    results = run_ranks(2, body)
    assert results[0]["error"] is None
    assert results[0]["seen"] == [(1, "train", "loss", 2.5), (2, "train", "loss", 4.5)]


def test_close_with_a_collective_in_flight() -> None:
    """close() right after a sync point waits for the collective in flight, then syncs the
    rest: nothing is lost."""

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(0, "val", "loss", 1.0 + rank, "mean", 1.0)
        reducer.add(1, "val", "loss", 2.0 + rank, "mean", 1.0)  # step 0 in flight
        reducer.close()

    results = run_ranks(2, body)
    assert (
        results[0]["seen"]
        == results[1]["seen"]
        == [
            (0, "val", "loss", 1.5),
            (1, "val", "loss", 2.5),
        ]
    )
    assert results[0]["transport"].calls[-1] == "close"


def test_wait_emits_values_in_flight_and_keeps_errors_for_the_sync_point() -> None:
    """wait() (what get_best_metric uses) returns once what is in flight is emitted, without
    raising its mismatch; the error comes at the next sync point, on every rank."""
    waited: dict[int, list[Any]] = {}

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(0, "train", "loss", float(rank), "mean", 1.0)
        reducer.add(0, "val", "acc" if rank == 0 else "f1", 1.0, "mean", 1.0)
        reducer.add(1, "train", "loss", 1.0, "mean", 1.0)  # step 0 in flight
        reducer.wait()
        waited[rank] = list(reducer.seen)  # type: ignore[attr-defined]
        reducer.sync()

    results = run_ranks(2, body)
    assert waited == {0: [], 1: []}  # step 0 mismatched: nothing to emit
    assert all(isinstance(r["error"], MetricMismatchError) for r in results)
    assert "val/acc: logged by ranks [0], missing on ranks [1]" in str(results[0]["error"])


def test_ride_along_columns_cost_no_collective() -> None:
    """Columns travel in the collectives made anyway (their values at each sync point) and come
    back reduced on every rank."""
    got: dict[int, list[dict[str, float]]] = {0: [], 1: [], 2: []}

    def body(rank: int, reducer: MetricReducer) -> None:
        columns = Columns("probe", {"hi": "max", "lo": "min", "total": "sum"}, got[rank].append)
        reducer.add_columns(columns)
        for step in range(3):
            reducer.add(step, "train", "loss", 1.0, "mean", 1.0)  # sends the previous step
            columns.update({"hi": float(rank + step), "lo": float(rank - step), "total": 1.0})
        reducer.close()

    results = run_ranks(3, body)
    assert (
        got[0]
        == got[1]
        == got[2]
        == [
            {"hi": 2.0, "lo": 0.0, "total": 3.0},
            {"hi": 3.0, "lo": -1.0, "total": 3.0},
            {"hi": 4.0, "lo": -2.0, "total": 3.0},
        ]
    )
    assert results[0]["transport"].calls.count("all_gather") == 1 + 3  # the settings once


def test_columns_that_differ_only_in_ops_end_the_reduction_on_every_rank() -> None:
    """Same owners and counts but another op on one rank: the settings differ, every rank gets
    the same error, and no row is gathered."""

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add_columns(Columns("probe", {"hi": "max" if rank == 0 else "min"}, print))
        for step in range(3):
            reducer.add(step, "train", "loss", 1.0, "mean", 1.0)
        reducer.close()

    results = run_ranks(2, body)
    messages = [str(r["error"]) for r in results]
    assert all(isinstance(r["error"], MetricMismatchError) for r in results)
    assert messages[0] == messages[1]
    assert messages[0].startswith("ranks built their loggers with different reduction settings")
    assert messages[0].split("\n")[1:] == [
        "  ride-along columns: the same owners and counts, different names or ops"
    ]
    assert results[0]["transport"].calls == ["all_gather", "all_gather_object"]
    assert results[0]["seen"] == []


def test_a_failing_column_callback_is_reported_once(capsys: pytest.CaptureFixture[str]) -> None:
    """A callback that raises is reported to stderr once; reduction goes on."""
    seen: list[Any] = []
    reducer = MetricReducer(lambda *a: seen.append(a), transport=LocalTransport())

    def broken(values: dict[str, float]) -> None:
        raise ValueError("no disk")

    reducer.add_columns(Columns("sampler", {"n": "max"}, broken))
    for step in range(3):
        reducer.add(step, "t", "x", 1.0, "sum", 1.0)
    reducer.close()
    assert len(seen) == 3
    err = capsys.readouterr().err
    assert err.count("the callback of the 'sampler' columns failed (ValueError: no disk)") == 1


def test_sync_every_must_be_a_positive_int() -> None:
    """A bad sync_every is a ValueError naming it; steps must be integers."""
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=repr(bad)):
            MetricReducer(lambda *a: None, transport=LocalTransport(), sync_every=bad)
    reducer = MetricReducer(lambda *a: None, transport=LocalTransport(), sync_every=2)
    with pytest.raises(TypeError, match="step must be an integer"):
        reducer.add("3", "t", "x", 1.0, "sum", 1.0)
    reducer.close()


def test_nan_mean_weight_zero_everywhere() -> None:
    """A mean whose weights sum to 0 over the ranks is NaN, in a batch as alone."""

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(0, "t", "m", 1.0, "mean", 0.0)
        reducer.add(1, "t", "m", 1.0, "mean", 2.0)
        reducer.close()

    results = run_ranks(2, body, sync_every=2)
    assert math.isnan(results[0]["seen"][0][3]) and results[0]["seen"][1] == (1, "t", "m", 1.0)


@pytest.mark.parametrize("world", [1, 2, 3, 4, 5, 7, 8])
def test_bruck_all_gather_gives_every_row_in_rank_order(world: int) -> None:
    """Bruck's rounds (what GlooTransport uses from 4 ranks on) give each rank the same matrix
    as a ring would, for any number of ranks, in ceil(log2 W) exchanges."""
    boxes: dict[tuple[int, int, int], Any] = {}
    ready = threading.Condition()
    rounds: dict[int, int] = {}
    out: dict[int, torch.Tensor] = {}

    def rank_main(rank: int) -> None:
        turn = [0]

        def exchange(rows: torch.Tensor, to: int, source: int) -> torch.Tensor:
            with ready:
                boxes[(rank, to, turn[0])] = rows.clone()
                ready.notify_all()
                ready.wait_for(lambda: (source, rank, turn[0]) in boxes, timeout=10)
                got = boxes[(source, rank, turn[0])]
            turn[0] += 1
            return got

        row = torch.arange(3, dtype=torch.float64) + 10 * rank
        out[rank] = _transport.bruck_all_gather(row, rank, world, exchange)
        rounds[rank] = turn[0]

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    expected = torch.stack([torch.arange(3, dtype=torch.float64) + 10 * r for r in range(world)])
    assert all(torch.equal(out[r], expected) for r in range(world))
    assert set(rounds.values()) == {math.ceil(math.log2(world))}
