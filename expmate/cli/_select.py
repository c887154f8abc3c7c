"""Which runs and metrics a command's arguments name; read errors become one-line CLI errors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from expmate.cli import EXIT_NO_DATA, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from expmate.runs import Run


def add_runs_argument(parser: Any) -> None:
    """The ``RUN...`` arguments of a command that takes several runs."""
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run directories, directories of runs, or glob patterns ('runs/lr_*')",
    )


def select_runs(paths: Sequence[str]) -> list[Run]:
    """The runs named by ``paths`` (see :func:`expmate.runs.load_runs`).

    Raises:
        CliError: a path that is not a run nor holds runs, or a pattern that matches nothing.
    """
    from expmate.runs import RunError, load_runs

    try:
        return load_runs(list(paths))
    except RunError as exc:
        raise CliError(str(exc), EXIT_NO_DATA) from None


def select_run(path: str) -> Run:
    """The one run at ``path``.

    Raises:
        CliError: ``path`` is not a run directory.
    """
    from expmate.runs import RunError, load_run

    try:
        return load_run(path)
    except RunError as exc:
        if os.path.isdir(path):
            raise CliError(
                f"{path!r} is not a run directory (no summary.json, events.jsonl or metrics.csv); "
                f"`expmate ls {path}` lists the runs under it",
                EXIT_NO_DATA,
            ) from None
        raise CliError(str(exc), EXIT_NO_DATA) from None


def metric_key(text: str) -> tuple[str | None, str]:
    """``"val/loss"`` -> ``("val", "loss")``; ``"loss"`` -> ``(None, "loss")`` (every split).

    Raises:
        CliError: an empty split or name (usage, exit 2).
    """
    split, sep, name = text.partition("/")
    if not sep:
        split, name = "", text
        if not name:
            raise CliError("a metric is SPLIT/NAME (val/loss) or NAME (loss), not ''", EXIT_USAGE)
        return None, name
    if not split or not name:
        raise CliError(
            f"a metric is SPLIT/NAME (val/loss) or NAME (loss), not {text!r}", EXIT_USAGE
        )
    return split, name


def full_key(text: str) -> str:
    """``"val/loss"`` checked to name a split and a metric.

    Raises:
        CliError: not SPLIT/NAME (usage, exit 2).
    """
    split, name = metric_key(text)
    if split is None:
        raise CliError(f"a metric here is SPLIT/NAME (val/loss), not {text!r}", EXIT_USAGE)
    return f"{split}/{name}"
