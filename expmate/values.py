"""Turning what users pass as a metric value into a number, without importing torch or numpy.

Accepted: int, float, bool (as 0/1), numbers such as Decimal or Fraction, numpy scalars and
one-element arrays, one-element torch tensors (0-dim or not, any device). Anything else is a
TypeError or ValueError that names the value: also a finite number that a float64 cannot hold
(``10**400``, ``Decimal("1e5000")``, a huge ``np.longdouble``), which would be infinite in
``best.json`` and in any reader.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import operator
import sys
from typing import Any

# The integers a float64 holds without overflowing (larger ones are checked one by one), and the
# steps accepted (int64, what every reader and torch can hold).
FLOAT_INT_LIMIT = int(sys.float_info.max)
STEP_MIN, STEP_MAX = -(2**63), 2**63 - 1


def _describe(value: Any) -> str:
    if type(value) is int and not -FLOAT_INT_LIMIT <= value <= FLOAT_INT_LIMIT:
        text = f"an int of {value.bit_length()} bits"  # repr() refuses over 4300 digits
    else:
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
            text = f"<{type(value).__qualname__} object>"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} (type {type(value).__module__}.{type(value).__qualname__})"


def _as_float(value: Any, *, what: str) -> float:
    """``float(value)`` for a real number, refusing one a float64 cannot hold (no overflow to
    infinity, no OverflowError).

    Raises:
        ValueError: too large for a float64, or not convertible (a signalling NaN).
    """
    try:
        number = float(value)
    except (OverflowError, ValueError):
        number = None
    if number is None or (math.isinf(number) and value not in (math.inf, -math.inf)):
        raise ValueError(f"{what} must fit in a float64, got {_describe(value)}")
    return number


_tensor_types: set[type] = set()


def is_torch_tensor(value: Any) -> bool:
    """True for torch tensors and their subclasses (Parameter), found without importing torch."""
    kind = type(value)
    if kind in _tensor_types:
        return True
    if any(cls.__module__ == "torch" and cls.__name__ == "Tensor" for cls in kind.__mro__):
        _tensor_types.add(kind)
        return True
    return False


def check_tensor(value: Any, *, what: str) -> None:
    """Raise ValueError unless the tensor holds exactly one real number (no ``.item()`` here)."""
    if value.numel() != 1:
        raise ValueError(
            f"{what} must be a single number, got a tensor of shape {tuple(value.shape)}"
        )
    if value.is_complex():
        raise TypeError(f"{what} must be a real number, got a complex tensor {_describe(value)}")


def metric_value(value: Any, *, what: str = "metric value") -> Any:
    """Validate a metric value and return it as int/float, or as the tensor itself when it lives
    on an accelerator (so the caller can copy many of them to the host at once, later).

    Raises:
        TypeError: not a number (None, str, list, dict, ...).
        ValueError: an array or tensor with other than exactly one element.
    """
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        if not -FLOAT_INT_LIMIT <= value <= FLOAT_INT_LIMIT:
            _as_float(value, what=what)
        return value
    if kind is bool:
        return int(value)
    if is_torch_tensor(value):
        if value.is_cpu:
            # item() itself refuses more than one element: the usual case needs no other check.
            try:
                number = value.item()
            except (RuntimeError, ValueError):
                number = None
            if type(number) is float or type(number) is int:
                return number
            check_tensor(value, what=what)
            return metric_value(number, what=what)  # a bool tensor gives a bool: 0/1
        check_tensor(value, what=what)
        return value.detach()
    if kind.__module__ == "numpy":
        size = getattr(value, "size", 1)
        if size != 1:
            raise ValueError(f"{what} must be a single number, got an array of shape {value.shape}")
        item = value.item() if hasattr(value, "item") else value
        if type(item).__module__ != "numpy":
            return metric_value(item, what=what)
        # item() keeps extended types as they are (np.longdouble, np.clongdouble).
        if not isinstance(item, numbers.Real):
            raise TypeError(f"{what} must be a real number, got {_describe(value)}")
        return _as_float(item, what=what)
    if isinstance(value, numbers.Real) or kind.__module__ in ("decimal", "_decimal", "_pydecimal"):
        return _as_float(value, what=what)
    raise TypeError(
        f"{what} must be a number (int, float, numpy scalar or one-element tensor), "
        f"got {_describe(value)}"
    )


REDUCE_OPS = ("mean", "sum", "min", "max")


def reduce_op(op: Any) -> str | None:
    """Validate a cross-rank reduction: one of :data:`REDUCE_OPS`, or None for none.

    Raises:
        ValueError: anything else, with the value named.
    """
    if op is None or op in REDUCE_OPS:
        return op  # type: ignore[no-any-return]
    raise ValueError(f"reduce must be one of {', '.join(REDUCE_OPS)} or None, not {op!r}")


def weight_value(weight: Any) -> float:
    """Validate a rank's weight in a mean (e.g. its sample count): a finite number >= 0.

    Raises:
        TypeError: not a number; ValueError: negative, NaN or infinite. Both name the value.
    """
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise TypeError(f"weight must be a number, got {_describe(weight)}")
    number = float(weight)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
    return number


def step_value(step: Any) -> int:
    """Validate a step: an integer (Python or numpy) in the int64 range, not a bool.

    Raises:
        TypeError: anything else, with the value named.
        ValueError: an integer outside the int64 range.
    """
    number: int | None = None
    if type(step) is int:
        number = step
    elif not isinstance(step, bool):
        if is_torch_tensor(step) and step.numel() == 1 and not step.is_floating_point():
            number = int(step.item())
        else:
            with contextlib.suppress(TypeError):
                number = operator.index(step)
    if number is None:
        raise TypeError(f"step must be an integer, got {_describe(step)}")
    if not STEP_MIN <= number <= STEP_MAX:
        raise ValueError(f"step must fit in an int64, got {_describe(step)}")
    return number


def text_value(value: Any, *, what: str) -> str:
    """Validate a split or metric name: a non-empty string."""
    if type(value) is not str:
        raise TypeError(f"{what} must be a string, got {_describe(value)}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    return value
