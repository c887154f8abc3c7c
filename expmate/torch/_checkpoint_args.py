"""Checking what a checkpoint manager is given: every check raises before anything is written."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from expmate.best import check_mode, detect_mode
from expmate.torch._checkpoint_state import check_stateful
from expmate.values import step_value


def check_logger(logger: Any) -> None:
    """Raise TypeError unless ``logger`` is an :class:`expmate.ExperimentLogger`."""
    from expmate import ExperimentLogger

    if not isinstance(logger, ExperimentLogger):
        raise TypeError(
            f"logger must be an expmate.ExperimentLogger, not {type(logger).__qualname__}"
        )


def count(value: Any, what: str, *, allow_none: bool = False) -> int | None:
    """A non-negative int (or None when allowed), else TypeError/ValueError naming it."""
    if value is None and allow_none:
        return None
    if type(value) is not int:
        raise TypeError(f"{what} must be a non-negative int, not {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be a non-negative int, not {value!r}")
    return value


def monitor_spec(monitor: Any, mode: Any) -> tuple[str | None, str | None, str | None]:
    """``(split, name, mode)`` of a ``"val/loss"`` monitor, the mode detected from the name as
    for best.json; ``(None, None, None)`` without a monitor.

    Raises:
        TypeError, ValueError: a malformed monitor, a bad mode, a mode that contradicts the name,
            a name whose direction cannot be told without a mode, a mode without a monitor.
    """
    check_mode(mode)
    if monitor is None:
        if mode is not None:
            raise ValueError(f"mode={mode!r} was given without a monitor to apply it to")
        return None, None, None
    if not isinstance(monitor, str):
        raise TypeError(
            f"monitor must be a 'split/name' string such as 'val/loss', not {monitor!r}"
        )
    split, _, name = monitor.partition("/")
    if not split or not name:
        raise ValueError(f"monitor must be 'split/name', such as 'val/loss', not {monitor!r}")
    detected = detect_mode(name)
    if mode is None:
        if detected is None:
            raise ValueError(
                f"cannot tell whether monitor {monitor!r} improves downwards or upwards: "
                "pass mode='min' or mode='max'"
            )
        return split, name, detected
    if detected is not None and mode != detected:
        raise ValueError(
            f"mode={mode!r} contradicts monitor {monitor!r}, whose name says it improves with "
            f"{detected!r}; pass mode={detected!r} or leave mode out"
        )
    return split, name, mode


def positive(value: Any, what: str, *, integer: bool) -> Any:
    """A positive int (``integer``) or finite positive number, else TypeError/ValueError."""
    wrong_kind = type(value) is not int and (integer or type(value) is not float)
    if wrong_kind:
        raise TypeError(
            f"{what} must be a positive {'int' if integer else 'number'}, not {value!r}"
        )
    number = float(value)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{what} must be positive, not {value!r}")
    return value


def checked_step(step: Any) -> int:
    """A step: a non-negative integer."""
    step = step_value(step)
    if step < 0:
        raise ValueError(f"step must be a non-negative integer, not {step!r}")
    return step


def checked_objects(model: Any, **parts: Any) -> dict[str, Any]:
    """The given optimizer / scheduler / scaler (None left out), each checked to be stateful."""
    check_stateful(model, "model")
    for name, obj in parts.items():
        if obj is not None:
            check_stateful(obj, name)
    return {name: obj for name, obj in parts.items() if obj is not None}


def directory_problem(directory: Path) -> tuple[str, str] | None:
    """Create ``directory``; ``(exception name, message)`` when it cannot hold checkpoints."""
    if directory.exists() and not directory.is_dir():
        return "NotADirectoryError", f"checkpoint directory {str(directory)!r} is not a directory"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return (
            "OSError",
            f"cannot create checkpoint directory {str(directory)!r}: {exc.strerror or exc}",
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        return "PermissionError", f"checkpoint directory {str(directory)!r} is not writable"
    return None


ERRORS: dict[str, type[Exception]] = {
    "NotADirectoryError": NotADirectoryError,
    "OSError": OSError,
    "PermissionError": PermissionError,
    "TypeError": TypeError,
    "ValueError": ValueError,
}
