"""expmate.values: metric values, steps and names checked and turned into plain numbers."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch

from expmate.values import is_torch_tensor, metric_value, step_value, text_value


@pytest.mark.parametrize(
    ("value", "expected", "kind"),
    [
        (0.5, 0.5, float),
        (3, 3, int),
        (True, 1, int),
        (False, 0, int),
        (np.float32(0.5), 0.5, float),
        (np.float64(0.1), 0.1, float),
        (np.int32(7), 7, int),
        (np.bool_(True), 1, int),
        (np.array(1.25), 1.25, float),
        (np.array([[2.5]]), 2.5, float),
        (torch.tensor(0.25), 0.25, float),
        (torch.tensor([3]), 3, int),
        (torch.tensor(True), 1, int),
        (torch.nn.Parameter(torch.tensor(0.5)), 0.5, float),
        (Fraction(1, 4), 0.25, float),
        (Decimal("1.5"), 1.5, float),
    ],
    ids=[
        "float",
        "int",
        "true",
        "false",
        "np-float32",
        "np-float64",
        "np-int32",
        "np-bool",
        "np-0d",
        "np-2d-one",
        "tensor-0d",
        "tensor-int",
        "tensor-bool",
        "parameter",
        "fraction",
        "decimal",
    ],
)
def test_metric_value_gives_a_plain_number(value: Any, expected: float, kind: type) -> None:
    """Number-like values come back as a Python int or float of the same value."""
    result = metric_value(value)
    assert (result, type(result)) == (expected, kind)


def test_metric_value_keeps_nan() -> None:
    """NaN is a valid value (written, never best)."""
    result = metric_value(np.float64("nan"))
    assert type(result) is float and result != result


@pytest.mark.parametrize(
    ("value", "error", "named"),
    [
        (None, TypeError, "None (type builtins.NoneType)"),
        ("1.0", TypeError, "'1.0' (type builtins.str)"),
        ([1.0], TypeError, "[1.0] (type builtins.list)"),
        (1 + 2j, TypeError, "(1+2j)"),
        (np.array([1.0, 2.0]), ValueError, "shape (2,)"),
        (np.zeros((0,)), ValueError, "shape (0,)"),
        (torch.ones(2, 2), ValueError, "shape (2, 2)"),
        (torch.tensor([1 + 1j]), TypeError, "complex"),
        (np.str_("x"), TypeError, "'x'"),
    ],
    ids=[
        "none",
        "str",
        "list",
        "complex",
        "np-array",
        "np-empty",
        "tensor",
        "ctensor",
        "np-str",
    ],
)
def test_metric_value_refuses_non_numbers_naming_them(
    value: Any, error: type[Exception], named: str
) -> None:
    """Anything that is not one real number raises, with the value and the caller's label."""
    with pytest.raises(error) as caught:
        metric_value(value, what="value of metric 'val'/'loss'")
    assert named in str(caught.value)
    assert str(caught.value).startswith("value of metric 'val'/'loss' must be")


def test_long_reprs_are_shortened() -> None:
    """A long value is named by its first 77 characters and an ellipsis."""
    with pytest.raises(TypeError) as caught:
        metric_value("x" * 200)
    assert "'" + "x" * 76 + "... (type builtins.str)" in str(caught.value)


def test_is_torch_tensor_without_importing_torch_types() -> None:
    """Tensors and Parameters are tensors; numpy arrays and floats are not."""
    assert [
        is_torch_tensor(v)
        for v in (torch.tensor(1.0), torch.nn.Parameter(torch.zeros(1)), np.zeros(1), 1.0)
    ] == [True, True, False, False]


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0), (12, 12), (np.int64(5), 5), (torch.tensor(7), 7), (np.uint8(3), 3)],
    ids=["zero", "int", "np-int64", "tensor", "np-uint8"],
)
def test_step_value_accepts_integers(step: Any, expected: int) -> None:
    """Python, numpy and integer-tensor steps come back as int."""
    result = step_value(step)
    assert (result, type(result)) == (expected, int)


@pytest.mark.parametrize(
    ("step", "named"),
    [(1.0, "1.0"), (True, "True"), ("3", "'3'"), (None, "None"), (torch.tensor(1.5), "1.5")],
    ids=["float", "bool", "str", "none", "float-tensor"],
)
def test_step_value_refuses_non_integers(step: Any, named: str) -> None:
    """Floats, bools, strings and float tensors raise TypeError naming the step."""
    with pytest.raises(TypeError, match="step must be an integer") as caught:
        step_value(step)
    assert named in str(caught.value)


def test_text_value_accepts_a_string() -> None:
    """A non-empty string is returned as is."""
    assert text_value("val", what="split") == "val"


def test_text_value_refuses_non_strings_and_empty() -> None:
    """A number raises TypeError, an empty string ValueError, both naming what it was for."""
    with pytest.raises(TypeError, match="split must be a string, got 3"):
        text_value(3, what="split")
    with pytest.raises(ValueError, match="metric name must not be empty"):
        text_value("", what="metric name")


@pytest.mark.parametrize(
    ("step", "named"),
    [(2**63, "9223372036854775808"), (-(2**63) - 1, "-9223372036854775809"), (10**5000, "bits")],
    ids=["int64-max-plus-one", "int64-min-minus-one", "over-4300-digits"],
)
def test_step_value_refuses_steps_beyond_int64(step: int, named: str) -> None:
    """An integer step outside int64 raises ValueError naming it; the ends of int64 pass."""
    with pytest.raises(ValueError, match="step must fit in an int64") as caught:
        step_value(step)
    assert named in str(caught.value)
    assert (step_value(2**63 - 1), step_value(-(2**63))) == (2**63 - 1, -(2**63))


def test_extended_numpy_types_end_without_recursion() -> None:
    """np.longdouble becomes a float64 (its item() stays a longdouble); np.clongdouble is a
    TypeError naming it, not a RecursionError."""
    assert metric_value(np.longdouble(0.25)) == 0.25
    assert type(metric_value(np.longdouble(0.25))) is float
    with pytest.raises(TypeError, match=r"must be a real number, got .*clongdouble"):
        metric_value(np.clongdouble(1 + 1j))
