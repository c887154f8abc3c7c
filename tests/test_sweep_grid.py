"""The grid of a sweep: value lists, run order and ids, the command template."""

from __future__ import annotations

import pytest

from expmate.sweep_grid import (
    PlannedRun,
    build_argv,
    check_template,
    parse_parameter,
    plan_runs,
    split_values,
)


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("0.001,0.01", ["0.001", "0.01"]),
        ("64", ["64"]),
        ("[64, 128],[32]", ["[64, 128]", "[32]"]),
        ("{a: 1, b: 2},null", ["{a: 1, b: 2}", "null"]),
        ("'a,b',c", ["'a,b'", "c"]),
        (' "x, y" , z ', ['"x, y"', "z"]),
    ],
)
def test_split_values_keeps_commas_inside_brackets_and_quotes(text: str, values: list[str]) -> None:
    """Commas split values only outside brackets, braces and quotes."""
    assert split_values(text) == values


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2", "unbalanced bracket in '[1, 2'"),
        ("'a,b", "unbalanced ' in \"'a,b\""),
        ("1,,2", "empty value in '1,,2'"),
        ("", "empty value in ''"),
    ],
)
def test_split_values_rejects(text: str, message: str) -> None:
    """An open bracket or quote, or an empty value, is refused with the text named."""
    with pytest.raises(ValueError) as info:
        split_values(text)
    assert str(info.value) == message


def test_parse_parameter() -> None:
    """key=v1,v2 gives the key and its values."""
    assert parse_parameter("training.lr=0.001,0.01") == ("training.lr", ["0.001", "0.01"])
    assert parse_parameter("layers=[1, 2]") == ("layers", ["[1, 2]"])


@pytest.mark.parametrize("text", ["training.lr", "=1,2", "a b=1"])
def test_parse_parameter_rejects(text: str) -> None:
    """A parameter without a key or an '=' is refused, naming what was given."""
    with pytest.raises(ValueError) as info:
        parse_parameter(text)
    assert str(info.value) == f"a parameter is written key=value1,value2,..., not {text!r}"


def test_plan_runs_order_and_ids() -> None:
    """Nested-loop order (first parameter slowest), zero-padded ids naming the values."""
    runs = plan_runs(
        [("training.lr", ["0.001", "0.01"]), ("model.width", ["64", "128"])], sweep_dir="s"
    )
    assert runs == [
        PlannedRun(0, "000_lr0.001_width64", "s/000_lr0.001_width64", ["training.lr=0.001", "model.width=64"]),
        PlannedRun(1, "001_lr0.001_width128", "s/001_lr0.001_width128", ["training.lr=0.001", "model.width=128"]),
        PlannedRun(2, "002_lr0.01_width64", "s/002_lr0.01_width64", ["training.lr=0.01", "model.width=64"]),
        PlannedRun(3, "003_lr0.01_width128", "s/003_lr0.01_width128", ["training.lr=0.01", "model.width=128"]),
    ]  # fmt: skip


def test_plan_runs_ids_are_safe_and_wide_enough() -> None:
    """Characters outside [A-Za-z0-9_.-] become '-'; 1,000 runs get 3-digit indexes, more get 4."""
    (run,) = plan_runs([("layers", ["[64, 128]"])], sweep_dir="s")
    assert run.run_id == "000_layers-64-128"
    runs = plan_runs([("a", [str(i) for i in range(1001)])], sweep_dir="s")
    assert (runs[0].run_id, runs[-1].run_id) == ("0000_a0", "1000_a1000")


def test_plan_runs_rejects_a_key_given_twice() -> None:
    """The same key twice is refused (its values belong in one list)."""
    with pytest.raises(ValueError) as info:
        plan_runs([("lr", ["1"]), ("lr", ["2"])], sweep_dir="s")
    assert str(info.value) == "parameter 'lr' is given twice (write its values as one list)"


def test_build_argv_expands_overrides_and_placeholders() -> None:
    """{overrides} becomes several words; {run_id}, {run_dir}, {sweep_dir} are filled in."""
    words = check_template(
        "python 'my train.py' {overrides} --out={run_dir} --tag {run_id}@{sweep_dir}"
    )
    run = PlannedRun(1, "001_lr0.1", "runs/s/001_lr0.1", ["lr=0.1"])
    assert build_argv(words, run, sweep_dir="runs/s") == [
        "python",
        "my train.py",
        "lr=0.1",
        "run_id=001_lr0.1",
        "+run_dir=runs/s/001_lr0.1",
        "--out=runs/s/001_lr0.1",
        "--tag",
        "001_lr0.1@runs/s",
    ]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("python train.py", "the command 'python train.py' has no {overrides} word (where the overrides go), e.g. \"python train.py {overrides}\""),
        ("python train.py {overrides} {seed}", "unknown placeholder {seed} in the command; known: {overrides}, {run_id}, {run_dir}, {sweep_dir}"),
        ("python train.py {overrides} x={overrides}", "{overrides} must be a word of its own in the command, not 'x={overrides}'"),
        ("python 'train.py {overrides}", "cannot split the command \"python 'train.py {overrides}\": No closing quotation"),
        ("python train.py {overrides} {run_id", "bad placeholder in '{run_id': expected '}' before end of string"),
    ],
)  # fmt: skip
def test_check_template_rejects(template: str, message: str) -> None:
    """A template without {overrides}, with an unknown placeholder or bad quoting is refused."""
    with pytest.raises(ValueError) as info:
        check_template(template)
    assert str(info.value) == message
