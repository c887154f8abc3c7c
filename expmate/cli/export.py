"""``expmate export RUN... --tensorboard DIR``: runs as TensorBoard event files.

Each run becomes the TensorBoard run ``DIR/<run directory name>`` (``DIR/<parent>/<name>`` when
two runs share a name); see :mod:`expmate.tensorboard_export` for what is written. Every run is
read and checked before anything is written, so a bad run leaves ``DIR`` untouched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from expmate.cli import EXIT_NO_DATA, EXIT_USAGE, CliError, require
from expmate.cli._select import add_runs_argument, select_runs

_EVENT_FILES = "events.out.tfevents.*"


def register(subparsers: Any) -> None:
    """Add ``expmate export``."""
    parser = subparsers.add_parser(
        "export",
        help="write runs' metrics, best values and config as TensorBoard event files",
        description=(
            "Write each run's metrics.csv as TensorBoard scalars (with their steps and wall "
            "times), its best values as best/<split>/<name>, and its config in the HParams tab: "
            "one TensorBoard run per run, under DIR. View them with: tensorboard --logdir DIR"
        ),
    )
    add_runs_argument(parser)
    parser.add_argument(
        "--tensorboard", required=True, metavar="DIR", help="the TensorBoard log directory"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace event files an earlier export left for the same runs",
    )
    parser.set_defaults(handler=export)


def export(args: argparse.Namespace) -> int:
    """The ``expmate export`` handler."""
    require("tensorboard", extra="tensorboard", purpose="expmate export --tensorboard")
    from expmate.tensorboard_export import prepare_export, write_export

    root = Path(args.tensorboard)
    runs = select_runs(args.runs)
    exports = [prepare_export(run) for run in runs]  # a RunError (a corrupt file) is exit 1
    chosen = [(run, p) for run, p in zip(runs, exports, strict=True) if p.series]
    if not chosen:
        where = ", ".join(repr(str(run.path)) for run in runs)
        raise CliError(f"no metric rows to export in {where}", EXIT_NO_DATA)
    for run, prepared in zip(runs, exports, strict=True):
        if not prepared.series:
            print(f"expmate export: skipped {str(run.path)!r}: no metric rows", file=sys.stderr)
    targets = _targets([run for run, _ in chosen], root)
    _check_free(targets, overwrite=args.overwrite)
    for (run, prepared), target in zip(chosen, targets, strict=True):
        _clear(target)
        try:
            counts = write_export(prepared, target)
        except OSError as exc:
            raise CliError(f"cannot write {target}: {exc}") from None
        print(
            f"{run.path} -> {target}: {counts.tags} scalar tags, {counts.points} points, "
            f"{counts.hparams} hyperparameters"
        )
    print(f"view them: tensorboard --logdir {root}")
    return 0


def _targets(runs: list[Any], root: Path) -> list[Path]:
    """``root/<name>`` per run; ``root/<parent>/<name>`` for names several runs share."""
    names = [run.path.resolve().name for run in runs]
    out = []
    for run, name in zip(runs, names, strict=True):
        path = run.path.resolve()
        out.append(root / path.parent.name / name if names.count(name) > 1 else root / name)
    if len(set(out)) < len(out):
        raise CliError(
            "two runs would share one TensorBoard run name; export them apart", EXIT_USAGE
        )
    return out


def _check_free(targets: list[Path], *, overwrite: bool) -> None:
    for target in targets:
        if not overwrite and any(target.glob(_EVENT_FILES)):
            raise CliError(
                f"{target} already holds TensorBoard event files; add --overwrite to replace them",
                EXIT_USAGE,
            )


def _clear(target: Path) -> None:
    for old in target.glob(_EVENT_FILES):
        old.unlink()
