"""The asynchronous reduction under real torchrun (2 CPU ranks, gloo): values, batches, ints,
recovery, close in flight, the agreed stop after SIGTERM, a missing rank."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from tests.ddp_launch import torchrun

WORKERS = Path(__file__).parent / "workers"

pytestmark = pytest.mark.ddp


def csv_rows(path: Path) -> list[tuple[int, str, str, str]]:
    """``(step, split, name, value text)`` of every row of a metrics CSV."""
    with path.open(newline="") as f:
        return [(int(r["step"]), r["split"], r["name"], r["value"]) for r in csv.DictReader(f)]


def launch(tmp_path: Path, mode: str, nproc: int = 2) -> list[dict[str, Any]]:
    result = torchrun(WORKERS / "async_worker.py", str(tmp_path), mode, nproc=nproc, timeout=150)
    assert result.returncode == 0, result.output
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(nproc)]


def expected_step(step: int) -> list[tuple[int, str, str, str]]:
    """The rows of one step of async_worker.log_step, as metrics.csv writes them."""
    return [
        (step, "train", "loss", repr(1.5 + step)),
        (step, "train", "samples", "40"),
        (step, "train", "tokens", str(100 * step + 1)),
        (step, "train", "lr", repr(-0.5 / (step + 1))),
        (step, "val", "loss", repr(3.0 + 2 * abs(step - 3))),
    ]


def check_different_settings(tmp_path: Path, ranks: list[dict[str, Any]]) -> None:
    """system_metrics on rank 0 only, or sync_every differing, widens one rank's row: every rank
    raises the same clear error at the sync point after its first (no rank aborted by gloo, no
    timeout), and every later reduced value raises it again, without another collective."""
    head = (
        "ranks built their loggers with different reduction settings, so their metrics cannot "
        "be reduced together: every rank must pass the same sync_every= and system_metrics= to "
        "ExperimentLogger"
    )
    system = "stop (1), system (8) on ranks [0]; stop (1) on ranks [1]"
    lines = {
        "system": f"  ride-along columns (owner and count): {system}",
        "every": "  sync_every: 1 on ranks [0]; 2 on ranks [1]",
    }
    for run, line in lines.items():
        messages = {m for r in ranks for _, m in r[run]["raised"]}
        messages |= {r[run]["closed"] for r in ranks if r[run]["closed"] is not None}
        assert len(messages) == 1, run
        message = messages.pop()
        assert message.startswith(head), run
        assert message.split("\n")[1:] == [line], run
        assert not (tmp_path / run / "metrics.csv").exists(), run
    # Step 0 is sent at step 1's sync point and its error raised at the next: step 2 (and 3).
    assert [[s for s, _ in r["system"]["raised"]] for r in ranks] == [[2, 3], [2, 3]]
    assert [r["system"]["closed"] for r in ranks] == [None, None]
    # With sync_every=2, rank 1's first sync point is step 2; the next is its close().
    assert [[s for s, _ in r["every"]["raised"]] for r in ranks] == [[2, 3], []]
    assert ranks[0]["every"]["closed"] is None and ranks[1]["every"]["closed"] is not None


def test_values_batches_ints_and_recovery(tmp_path: Path) -> None:
    """Exact values through the asynchronous and the batched paths (integers written as
    integers), bests that wait for what is in flight, close() with a collective in flight, a
    skipped step that both ranks report alike before agreeing again, and ranks built with
    different settings (one launch for all)."""
    ranks = launch(tmp_path, "values")
    check_different_settings(tmp_path, ranks)
    expected = [row for step in range(6) for row in expected_step(step)]
    assert csv_rows(tmp_path / "async" / "metrics.csv") == [*expected, (6, "train", "loss", "1.0")]
    for got in ranks:
        assert got["async"]["best"] == {"value": 3.0, "step": 3, "mode": "min"}
        assert got["async"]["last"] == {"value": 5.0, "step": 4}
    expected = [row for step in range(8) for row in expected_step(step)]
    assert csv_rows(tmp_path / "batched" / "metrics.csv") == expected
    # The settings compared before the first row, then one row per window.
    assert ranks[0]["batched"]["counts"] == {"all_gather": 4, "all_gather_object": 1}
    assert [r["skip"]["raised"][0][0] for r in ranks] == [4, 5]
    assert [len(r["skip"]["raised"]) for r in ranks] == [1, 1]
    message = ranks[0]["skip"]["raised"][0][1]
    assert message == ranks[1]["skip"]["raised"][0][1]
    assert message.split("\n")[1:] == [
        "  different steps: step 2 on ranks [0]; step 3 on ranks [1]",
        "  ranks [0] discard their metrics up to step 3, so that the next sync point agrees again",
    ]
    assert csv_rows(tmp_path / "skip" / "metrics.csv") == [
        (s, "train", "loss", repr(10.0 * s + 0.5)) for s in (0, 1, 4, 5, 6, 7)
    ]


def test_sigterm_stop_and_missing_rank(tmp_path: Path) -> None:
    """SIGTERM to rank 1 makes should_stop() True on both ranks at the same step, with the
    signal noted and the files flushed, and no process killed; then a rank that stops logging
    makes the other fail at its next sync point, about one timeout after sending, naming it."""
    first, second = launch(tmp_path, "stop")
    assert first["stop"]["stopped_at"] == second["stop"]["stopped_at"] == 7
    assert (first["stop"]["signal"], second["stop"]["signal"]) == (None, "SIGTERM")
    assert second["stop"]["flushed"] is True
    assert [(tmp_path / "stop" / f"checkpoint_rank{r}.txt").read_text() for r in (0, 1)] == [
        "7",
        "7",
    ]
    missing = first["missing"]
    assert missing["message"].startswith(
        "metric sync on rank 0 failed at step 2 (pending metrics: train/loss): ranks [1] did "
        "not reach the sync point within 2s or left the job."
    )
    assert missing["sent"] < 1.0
    assert 1.0 < missing["waited"] < 10.0


def test_bruck_rounds_on_gloo(tmp_path: Path) -> None:
    """On 3 real gloo ranks Bruck's rounds give exactly gloo's ring matrix, and the reducer over
    them reduces exactly (weighted mean, sum of ints)."""
    ranks = launch(tmp_path, "bruck", nproc=3)
    assert [r["same"] for r in ranks] == [[True, True, True]] * 3
    expected = []
    for step in range(5):
        mean = sum((r + step) * (r + 1) for r in range(3)) / 6
        expected += [[step, "train", "loss", mean], [step, "train", "n", 3]]
    assert [r["seen"] for r in ranks] == [expected] * 3
