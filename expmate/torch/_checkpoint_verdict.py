"""Rank 0's verdict on a save from what every rank sent: agree, or the same error everywhere.

Pure: no I/O, no collectives, so each rule is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from expmate.torch._checkpoint_index import finite_or_none


@dataclass
class Verdict:
    """What rank 0 decided about one save.

    Attributes:
        error: ``(exception name, message)`` to raise on every rank, or None to go ahead.
        value: the monitored value recorded with the checkpoint (None: not ranked as best).
        warnings: ``(key, message)`` pairs to log once per manager.
    """

    error: tuple[str, str] | None = None
    value: float | None = None
    warnings: list[tuple[str, str]] = field(default_factory=list)


def same_reading(a: Any, b: Any) -> bool:
    """Two ``(value, step)`` readings of a metric are equal (NaN equal to NaN)."""
    if a is None or b is None:
        return a is b
    return bool(a[1] == b[1] and (a[0] == b[0] or (a[0] != a[0] and b[0] != b[0])))


def judge(
    step: int, items: list[dict[str, Any]], monitor: str | None, logged: list[str]
) -> Verdict:
    """Check that the ranks agree on a save of ``step`` and find its monitored value.

    Args:
        step: rank 0's step.
        items: what each rank sent, in rank order: ``step``, ``sharded`` and ``monitor``, the
            rank's latest ``(value, step)`` of the monitored metric or None.
        monitor: the manager's ``"split/name"`` or None.
        logged: rank 0's logged metric keys (``split_name``), named when the monitor is missing.
    """
    steps = [it["step"] for it in items]
    if len(set(steps)) > 1:
        shown = ", ".join(f"rank {r}: {s}" for r, s in enumerate(steps))
        return Verdict(("ValueError", f"ranks called save() with different steps ({shown})"))
    if len({it["sharded"] for it in items}) > 1:
        shown = ", ".join(f"rank {r}: {it['sharded']}" for r, it in enumerate(items))
        message = f"ranks disagree on whether the model state is sharded ({shown})"
        return Verdict(("ValueError", message))
    if monitor is None:
        return Verdict()
    mine = items[0]["monitor"]
    if mine is None:
        message = (
            f"monitor {monitor!r} was never logged, so checkpoint {step} cannot be ranked; "
            f"metrics logged so far (split_name): {', '.join(logged) or 'none'}"
        )
        return Verdict(("ValueError", message))
    value, at = mine
    if at != step:
        message = (
            f"{monitor} was last logged at step {at}, not at step {step}: checkpoints saved at "
            "steps without it are kept as the latest but never ranked as best (log the metric "
            "before calling save())"
        )
        return Verdict(warnings=[("stale", message)])
    verdict = Verdict(value=finite_or_none(value))
    if any(not same_reading(it["monitor"], mine) for it in items):
        message = (
            f"ranks hold different values of {monitor} at step {step}: it is not reduced across "
            "ranks, so rank 0's own value ranks checkpoints (the value in metrics.csv); log it "
            "with reduce='mean' to rank by the global value"
        )
        verdict.warnings.append(("local", message))
    return verdict
