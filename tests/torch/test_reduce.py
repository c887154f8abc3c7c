"""MetricReducer: reduction, mismatch detection, timeouts, tensors; in-process ranks and gloo."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from expmate.torch import _layout
from expmate.torch import reduce as reduce_module
from expmate.torch.reduce import (
    LocalTransport,
    MetricMismatchError,
    MetricReducer,
    SyncTimeoutError,
    close_all,
)
from tests.ddp_launch import torchrun
from tests.torch.thread_ranks import run_ranks

WORKERS = Path(__file__).parent / "workers"

Seen = list[tuple[Any, str, str, float]]


def test_true_global_mean_sum_min_max() -> None:
    """Unequal values and weights reduce to the weighted mean, sum, min and max on every rank."""

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(0, "train", "loss", [1.0, 3.0, 6.0][rank], "mean", [3.0, 1.0, 0.0][rank])
        reducer.add(0, "train", "count", [2, 5, 7][rank], "sum", 1.0)
        reducer.add(0, "train", "lo", [4.0, -1.5, 2.0][rank], "min", 1.0)
        reducer.add(0, "train", "hi", [4.0, -1.5, 2.0][rank], "max", 1.0)
        reducer.close()

    results = run_ranks(3, body)
    expected = [
        (0, "train", "loss", 1.5),
        (0, "train", "count", 14.0),
        (0, "train", "lo", -1.5),
        (0, "train", "hi", 4.0),
    ]
    assert [r["seen"] for r in results] == [expected] * 3


def test_nan_on_any_rank_propagates() -> None:
    """A NaN on any rank makes the mean, sum, min and max NaN, whichever rank holds it."""
    nan = float("nan")

    def body(rank: int, reducer: MetricReducer) -> None:
        for op in ("mean", "sum", "min", "max"):
            reducer.add(0, "a", op, [nan, 1.0][rank], op, 1.0)
            reducer.add(0, "b", op, [1.0, nan][rank], op, 1.0)
        reducer.close()

    results = run_ranks(2, body)
    assert len(results[0]["seen"]) == 8
    assert all(math.isnan(value) for *_, value in results[0]["seen"])


def test_steady_state_is_one_collective_per_step() -> None:
    """After the first step agrees on the settings and the key set, each step costs one
    all_gather and nothing else."""

    def body(rank: int, reducer: MetricReducer) -> None:
        for step in range(10):
            for i in range(8):
                reducer.add(step, "train", f"m{i}", float(rank + step), "mean", 1.0)
        reducer.close()

    results = run_ranks(2, body)
    calls = results[0]["transport"].calls
    assert calls.count("all_gather") == 1 + 10  # the settings, compared once
    assert calls.count("all_gather_object") == 1
    assert results[0]["seen"] == results[1]["seen"]
    assert results[0]["seen"][-1] == (9, "train", "m7", 9.5)


def test_alternating_key_sets_stay_on_the_fast_path() -> None:
    """Key sets seen before (train every step, val every third) need no further object exchange."""

    def body(rank: int, reducer: MetricReducer) -> None:
        for step in range(12):
            reducer.add(step, "train", "loss", 1.0, "mean", 1.0)
            if step % 3 == 2:
                reducer.add(step, "val", "loss", float(rank), "max", 1.0)
        reducer.close()

    results = run_ranks(2, body)
    assert results[0]["transport"].calls.count("all_gather_object") == 2
    assert [s for s in results[0]["seen"] if s[1] == "val"] == [
        (step, "val", "loss", 1.0) for step in (2, 5, 8, 11)
    ]


def test_mismatched_metric_sets_raise_the_same_error_on_every_rank() -> None:
    """A metric missing on one rank raises on all ranks, naming it; the next step still works."""

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(0, "train", "loss", 1.0, "mean", 1.0)
        if rank == 0:
            reducer.add(0, "val", "acc", 1.0, "mean", 1.0)
        try:
            reducer.sync()
        finally:
            reducer.add(1, "train", "loss", float(rank), "mean", 1.0)
            reducer.close()

    results = run_ranks(2, body)
    errors = [r["error"] for r in results]
    assert all(isinstance(e, MetricMismatchError) for e in errors)
    assert str(errors[0]) == str(errors[1])
    assert "  val/acc: logged by ranks [0], missing on ranks [1]" in str(errors[0])
    assert "train/loss" not in str(errors[0]).split("\n", 1)[1]
    assert results[0]["seen"] == results[1]["seen"] == [(1, "train", "loss", 0.5)]


def test_mismatched_ops_and_steps_are_named() -> None:
    """Different reduce ops for one metric, and different steps, are both reported."""

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(rank, "val", "loss", 1.0, ["mean", "max"][rank], 1.0)
        reducer.close()

    results = run_ranks(2, body)
    message = str(results[1]["error"])
    assert "different steps: step 0 on ranks [0]; step 1 on ranks [1]" in message
    assert "val/loss: reduce='mean' on ranks [0]; reduce='max' on ranks [1]" in message
    assert str(results[0]["error"]) == message


def test_same_steps_different_steps_detected_on_fast_path() -> None:
    """Ranks with the agreed key set but different steps do not merge values."""

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(0, "train", "loss", 1.0, "mean", 1.0)
        reducer.sync()
        reducer.add(5 + rank, "train", "loss", 1.0, "mean", 1.0)
        reducer.close()

    results = run_ranks(2, body)
    assert all(isinstance(r["error"], MetricMismatchError) for r in results)
    assert [s[0] for s in results[0]["seen"]] == [0]


def test_later_value_replaces_earlier_in_one_step() -> None:
    """The same (split, name) twice in one step keeps the later value."""

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(0, "train", "loss", 100.0, "mean", 1.0)
        reducer.add(0, "train", "acc", 0.5, "mean", 1.0)
        reducer.add(0, "train", "loss", float(rank), "sum", 1.0)
        reducer.close()

    results = run_ranks(2, body)
    assert results[0]["seen"] == [(0, "train", "loss", 1.0), (0, "train", "acc", 0.5)]


def test_empty_sync_is_still_a_collective() -> None:
    """sync() with nothing buffered joins the other ranks (they may have nothing either)."""

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.sync()
        reducer.sync()
        reducer.close()

    results = run_ranks(2, body)
    assert results[0]["transport"].calls == ["all_gather"] * (1 + 3) + ["close"]
    assert results[0]["seen"] == []


def test_empty_rank_against_busy_rank_is_a_mismatch() -> None:
    """One rank syncing nothing while another has metrics raises on both."""

    def body(rank: int, reducer: MetricReducer) -> None:
        if rank == 1:
            reducer.add(3, "train", "loss", 1.0, "mean", 1.0)
        try:
            reducer.sync()
        finally:
            reducer.close()

    results = run_ranks(2, body)
    assert "train/loss: logged by ranks [1], missing on ranks [0]" in str(results[0]["error"])
    assert str(results[0]["error"]) == str(results[1]["error"])


def test_tensor_values_need_no_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """0-dim and one-element tensors of any dtype reduce without a per-value .item()."""

    def no_item(self: torch.Tensor) -> Any:
        raise AssertionError("item() called")

    monkeypatch.setattr(torch.Tensor, "item", no_item)

    def body(rank: int, reducer: MetricReducer) -> None:
        reducer.add(0, "train", "loss", torch.tensor(0.25 + rank), "mean", 1.0)
        reducer.add(0, "train", "n", torch.tensor([3 + rank]), "sum", 1.0)
        reducer.add(0, "train", "h", torch.tensor([[1.5]], dtype=torch.float16), "max", 1.0)
        reducer.add(0, "train", "g", torch.tensor(2.0, requires_grad=True) * (rank + 1), "min", 1.0)
        reducer.close()

    results = run_ranks(2, body)
    assert results[0]["error"] is None
    assert results[0]["seen"] == [
        (0, "train", "loss", 0.75),
        (0, "train", "n", 7.0),
        (0, "train", "h", 1.5),
        (0, "train", "g", 2.0),
    ]


def test_tensor_is_snapshotted_when_added() -> None:
    """An accumulator changed in place after add() is reduced with the value it had then."""
    seen: Seen = []
    reducer = MetricReducer(lambda *a: seen.append(a), transport=LocalTransport())
    total = torch.tensor(4.0)
    reducer.add(0, "train", "loss", total, "mean", 1.0)
    total.zero_()
    reducer.close()
    assert seen == [(0, "train", "loss", 4.0)]


def test_single_process_reduces_to_the_value_itself() -> None:
    """Without a process group every op returns the value; a mean weighted 0 is NaN."""
    seen: Seen = []
    reducer = MetricReducer(lambda *a: seen.append(a))
    reducer.add(0, "val", "acc", 0.5, "mean", 4.0)
    reducer.add(0, "val", "n", 3, "sum", 1.0)
    reducer.add(1, "val", "acc", 0.5, "mean", 0.0)
    reducer.close()
    assert seen[:2] == [(0, "val", "acc", 0.5), (0, "val", "n", 3.0)]
    assert math.isnan(seen[2][3])


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_cuda_values_are_added_without_a_device_sync() -> None:
    """CUDA tensors are buffered with no host sync; the sync point copies them once."""
    seen: Seen = []
    reducer = MetricReducer(lambda *a: seen.append(a), transport=LocalTransport())
    loss = torch.tensor(0.5, device="cuda") * 3
    count = torch.tensor([7], device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        reducer.add(0, "train", "loss", loss, "mean", 2.0)
        reducer.add(0, "train", "n", count, "sum", 1.0)
        reducer.add(0, "train", "cpu", torch.tensor(2.0), "max", 1.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    reducer.close()
    assert seen == [(0, "train", "loss", 1.5), (0, "train", "n", 7.0), (0, "train", "cpu", 2.0)]


@needs_cuda
def test_cuda_values_reduce_across_ranks() -> None:
    """CUDA values of two in-memory ranks give the exact weighted mean and max."""

    def body(rank: int, reducer: MetricReducer) -> None:
        value = torch.tensor([1.0, 4.0][rank], device="cuda")
        reducer.add(0, "val", "loss", value, "mean", [3.0, 1.0][rank])
        reducer.add(0, "val", "top", value.to(torch.bfloat16), "max", 1.0)
        reducer.close()

    results = run_ranks(2, body)
    assert results[0]["error"] is None
    assert (
        results[0]["seen"]
        == results[1]["seen"]
        == [(0, "val", "loss", 1.75), (0, "val", "top", 4.0)]
    )


class _BrokenTransport(LocalTransport):
    def __init__(self) -> None:
        self.calls = 0

    def all_gather(self, row: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        raise RuntimeError("Timed out waiting 2000ms for recv operation to complete")


def test_failed_collective_names_step_and_pending_metrics() -> None:
    """A transport error becomes SyncTimeoutError; later syncs fail at once; close skips the wire."""
    transport = _BrokenTransport()
    reducer = MetricReducer(lambda *a: None, timeout=2.0, transport=transport)
    reducer.add(7, "train", "loss", 1.0, "mean", 1.0)
    reducer.add(7, "train", "acc", 1.0, "mean", 1.0)
    with pytest.raises(SyncTimeoutError) as caught:
        reducer.sync()
    message = str(caught.value)
    assert "at step 7 (pending metrics: train/acc, train/loss)" in message
    assert "within 2s" in message and "Timed out waiting 2000ms" in message
    with pytest.raises(SyncTimeoutError, match="an earlier metric sync failed"):
        reducer.add(8, "train", "loss", 1.0, "mean", 1.0)
    reducer.close()
    assert transport.calls == 1


def test_misuse_raises_at_once() -> None:
    """A bad op, weight or timeout is a ValueError naming it; add after close is refused."""
    reducer = MetricReducer(lambda *a: None)
    with pytest.raises(ValueError, match="'median'"):
        reducer.add(0, "train", "loss", 1.0, "median", 1.0)
    with pytest.raises(ValueError, match=r"-1\.0"):
        reducer.add(0, "train", "loss", 1.0, "mean", -1.0)
    with pytest.raises(ValueError, match="timeout"):
        MetricReducer(lambda *a: None, timeout=0)
    reducer.close()
    reducer.close()
    with pytest.raises(RuntimeError, match="closed"):
        reducer.add(0, "train", "loss", 1.0, "mean", 1.0)


def test_close_all_reduces_what_is_buffered(monkeypatch: pytest.MonkeyPatch) -> None:
    """close_all() (used by cleanup_ddp) runs the final sync of every open reducer."""
    monkeypatch.setattr(reduce_module, "_LIVE", [])
    seen: Seen = []
    first = MetricReducer(lambda *a: seen.append(a))
    second = MetricReducer(lambda *a: seen.append(a))
    first.add(1, "a", "x", 1.0, "sum", 1.0)
    second.add(2, "b", "y", 2.0, "sum", 1.0)
    close_all()
    assert seen == [(1, "a", "x", 1.0), (2, "b", "y", 2.0)]
    first.close()


def test_mismatch_report_is_short_for_large_jobs() -> None:
    """Rank lists are abbreviated; agreeing payloads give no report."""
    agree = [(0, [("t", "x", "mean", 1.0, 1.0)])] * 3
    assert _layout.mismatch_report(agree) is None
    assert _layout.format_ranks(list(range(512))) == "[0, 1, 2, 3, 4, 5, 6, ..., 511] (512 ranks)"


def test_layout_fingerprints_are_exact_floats() -> None:
    """Fingerprints fit float64 exactly and differ for different ops."""
    a = _layout.make_layout((("val", "loss", "mean"),))
    b = _layout.make_layout((("val", "loss", "max"),))
    assert a.fingerprint != b.fingerprint
    assert 0 <= a.fingerprint < 2**48 and float(int(a.fingerprint)) == a.fingerprint
    assert (a.width, b.width) == (2, 1)


# ---------------------------------------------------------------------------- real torchrun


@pytest.mark.ddp
def test_gloo_reduction_mismatch_and_tensors(tmp_path: Path) -> None:
    """Under torchrun (2 ranks, gloo): exact values, a mismatch raised on both ranks, recovery."""
    result = torchrun(WORKERS / "reduce_worker.py", str(tmp_path), "values", timeout=90)
    assert result.returncode == 0, result.output
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1], ranks
    got = ranks[0]
    assert got["seen"][:4] == [
        [0, "train", "loss", 1.75],
        [0, "train", "samples", 24.0],
        [0, "train", "lo", -2.0],
        [0, "train", "hi", 5.0],
    ]
    assert got["seen"][4:6] == [[1, "train", "loss", 0.375], [1, "train", "n", 11.0]]
    assert "val/acc: logged by ranks [0], missing on ranks [1]" in got["mismatch"]
    assert got["seen"][6:] == [[3, "train", "loss", 2.5], [3, "train", "n", 3.0]]
    assert got["gathers"] == {"all_gather": 1 + 4, "all_gather_object": 3}


@pytest.mark.ddp
def test_gloo_rank_that_skips_a_sync_fails_the_other_within_timeout(tmp_path: Path) -> None:
    """A rank that never reaches a sync (or never creates its reducer) makes the other raise
    SyncTimeoutError in about the timeout."""
    result = torchrun(WORKERS / "reduce_worker.py", str(tmp_path), "timeout", timeout=90)
    assert result.returncode == 0, result.output
    got = json.loads((tmp_path / "rank0.json").read_text())
    assert got["error"] == "SyncTimeoutError"
    assert "at step 4 (pending metrics: train/loss)" in got["message"]
    assert "within 2s" in got["message"]
    assert 1.5 < got["waited"] < 10.0
    assert got["create_message"].startswith("creating the metric reduction group failed on rank 0")
    assert 1.5 < got["create_waited"] < 10.0
