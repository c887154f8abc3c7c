"""Rank 0's verdict on a save: agreement of the ranks and the monitored value."""

from __future__ import annotations

import math
from typing import Any

from expmate.torch._checkpoint_verdict import Verdict, judge, same_reading


def items(
    *readings: Any, steps: tuple[int, ...] = (5, 5), sharded: tuple[bool, ...] = (False, False)
) -> list[dict[str, Any]]:
    return [
        {"step": s, "sharded": h, "monitor": r}
        for s, h, r in zip(steps, sharded, readings, strict=True)
    ]


def test_agreeing_ranks_record_the_value() -> None:
    """Same step, same reading of the monitor at that step: its value, no warning."""
    assert judge(5, items((0.5, 5), (0.5, 5)), "val/loss", []) == Verdict(value=0.5)


def test_ranks_with_different_steps_are_an_error() -> None:
    """Different steps: the same ValueError on every rank, naming each rank's step."""
    verdict = judge(5, items(None, None, steps=(5, 6)), None, [])
    assert verdict.error == (
        "ValueError",
        "ranks called save() with different steps (rank 0: 5, rank 1: 6)",
    )


def test_sharded_on_some_ranks_only_is_an_error() -> None:
    """Ranks that disagree on sharding are named."""
    verdict = judge(5, items(None, None, sharded=(True, False)), None, [])
    assert verdict.error == (
        "ValueError",
        "ranks disagree on whether the model state is sharded (rank 0: True, rank 1: False)",
    )


def test_a_monitor_never_logged_names_the_logged_metrics() -> None:
    """No reading on rank 0: an error listing what was logged."""
    verdict = judge(5, items(None, None), "val/loss", ["train_loss"])
    assert verdict.error == (
        "ValueError",
        "monitor 'val/loss' was never logged, so checkpoint 5 cannot be ranked; metrics logged "
        "so far (split_name): train_loss",
    )


def test_a_reading_of_another_step_is_not_a_value() -> None:
    """The monitor was last logged at step 4, the save is of step 5: no value, one warning."""
    verdict = judge(5, items((0.5, 4), (0.5, 4)), "val/loss", [])
    assert (verdict.error, verdict.value, [k for k, _ in verdict.warnings]) == (
        None,
        None,
        ["stale"],
    )


def test_readings_that_differ_across_ranks_warn() -> None:
    """An unreduced monitor: rank 0's value, with a warning."""
    verdict = judge(5, items((0.5, 5), (0.25, 5)), "val/loss", [])
    assert (verdict.value, [k for k, _ in verdict.warnings]) == (0.5, ["local"])


def test_nan_readings_agree_and_record_no_value() -> None:
    """NaN equals NaN for the agreement check; a NaN value is not recorded."""
    assert same_reading((math.nan, 1), (math.nan, 1))
    assert not same_reading((math.nan, 1), (math.nan, 2))
    assert judge(5, items((math.nan, 5), (math.nan, 5)), "val/loss", []) == Verdict(value=None)
