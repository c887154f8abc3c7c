"""The runs of a sweep: a grid of config overrides, a run id for each, the command that starts it.

Pure functions, no processes: ``expmate sweep`` (``expmate/cli/sweep.py``) runs what this builds.

Example:
    >>> params = [parse_parameter("training.lr=0.001,0.01"), parse_parameter("model.width=64,128")]
    >>> [run.overrides for run in plan_runs(params, sweep_dir="runs/s")][:2]
    [['training.lr=0.001', 'model.width=64'], ['training.lr=0.001', 'model.width=128']]
"""

from __future__ import annotations

import itertools
import re
import shlex
import string
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PlannedRun",
    "build_argv",
    "check_template",
    "child_overrides",
    "parse_parameter",
    "plan_runs",
    "split_values",
]

SWEEP_INDEX = "sweep.json"  # the index a sweep writes in its directory
OVERRIDES_FIELD = "overrides"
OVERRIDES = "{overrides}"
_PLACEHOLDERS = (OVERRIDES_FIELD, "run_id", "run_dir", "sweep_dir")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_SLUG_CHARS = 80  # a run id's part after the index is cut to this many characters
_CLOSING = {"[": "]", "{": "}"}


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its place in the grid, its id and directory, its overrides."""

    index: int
    run_id: str
    run_dir: str
    overrides: list[str]


def split_values(text: str) -> list[str]:
    """Split ``text`` at commas that are outside brackets, braces and quotes.

    ``0.001,0.01`` gives two values; ``[64, 128],[32]`` gives two lists; ``'a,b',c`` keeps the
    quoted comma.

    Raises:
        ValueError: a bracket or quote is left open, or a value is empty.
    """
    values: list[str] = []
    closers: list[str] = []
    quote = ""
    start = 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _CLOSING:
            closers.append(_CLOSING[char])
        elif closers and char == closers[-1]:
            closers.pop()
        elif char == "," and not closers:
            values.append(text[start:i])
            start = i + 1
    if quote or closers:
        raise ValueError(f"unbalanced {quote or 'bracket'} in {text!r}")
    values.append(text[start:])
    if any(not value.strip() for value in values):
        raise ValueError(f"empty value in {text!r}")
    return [value.strip() for value in values]


def parse_parameter(text: str) -> tuple[str, list[str]]:
    """``"training.lr=0.001,0.01"`` -> ``("training.lr", ["0.001", "0.01"])``.

    Raises:
        ValueError: no ``=``, an empty key, or a value list :func:`split_values` refuses.
    """
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or " " in key.strip():
        raise ValueError(f"a parameter is written key=value1,value2,..., not {text!r}")
    return key.strip(), split_values(values)


def plan_runs(parameters: list[tuple[str, list[str]]], *, sweep_dir: str) -> list[PlannedRun]:
    """Every combination of the parameters' values, in a stable order.

    The order is that of nested loops over the parameters as given: the first parameter varies
    slowest, the last fastest, and each parameter's values keep their order. Run ids are the index
    (zero-padded) and the values (``003_lr0.01_width128``), so they sort in grid order.

    Raises:
        ValueError: a key is given twice.
    """
    keys = [key for key, _ in parameters]
    for key in keys:
        if keys.count(key) > 1:
            raise ValueError(f"parameter {key!r} is given twice (write its values as one list)")
    grid = list(itertools.product(*(values for _, values in parameters)))
    width = max(3, len(str(len(grid) - 1)))
    runs = []
    for index, values in enumerate(grid):
        slug = "_".join(
            _UNSAFE.sub("-", f"{key.rsplit('.', 1)[-1]}{value}").strip("-")
            for key, value in zip(keys, values, strict=True)
        )
        slug = slug[:_SLUG_CHARS].strip("-_")
        run_id = f"{index:0{width}d}_{slug}" if slug else f"{index:0{width}d}"
        runs.append(
            PlannedRun(
                index=index,
                run_id=run_id,
                run_dir=str(Path(sweep_dir) / run_id),
                overrides=[f"{key}={value}" for key, value in zip(keys, values, strict=True)],
            )
        )
    return runs


def check_template(template: str) -> list[str]:
    """The command template split into words (shell rules); checks its placeholders.

    Raises:
        ValueError: unbalanced quotes, an unknown placeholder, or no ``{overrides}`` word.
    """
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise ValueError(f"cannot split the command {template!r}: {exc}") from None
    if OVERRIDES not in words:
        raise ValueError(
            f"the command {template!r} has no {OVERRIDES} word (where the overrides go), "
            'e.g. "python train.py {overrides}"'
        )
    for word in words:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(word) if f is not None]
        except ValueError as exc:
            raise ValueError(f"bad placeholder in {word!r}: {exc}") from None
        if word != OVERRIDES and OVERRIDES_FIELD in fields:
            raise ValueError(f"{OVERRIDES} must be a word of its own in the command, not {word!r}")
        unknown = [f for f in fields if f not in _PLACEHOLDERS]
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{unknown[0]}}} in the command; known: "
                + ", ".join(f"{{{p}}}" for p in _PLACEHOLDERS)
            )
    return words


def child_overrides(run: PlannedRun) -> list[str]:
    """What ``{overrides}`` becomes: the grid's overrides, then ``run_id`` and ``+run_dir``."""
    return [*run.overrides, f"run_id={run.run_id}", f"+run_dir={run.run_dir}"]


def build_argv(words: list[str], run: PlannedRun, *, sweep_dir: str) -> list[str]:
    """The child's argv: ``{overrides}`` expanded to several words, other placeholders filled."""
    argv: list[str] = []
    for word in words:
        if word == OVERRIDES:
            argv.extend(child_overrides(run))
        else:
            argv.append(word.format(run_id=run.run_id, run_dir=run.run_dir, sweep_dir=sweep_dir))
    return argv
