"""The ``expmate`` command: look at runs from their files (``expmate ls``, ``show``, ...).

Each subcommand is a module of this package with ``register(subparsers)``, which adds its parser
and sets ``handler``, a function ``(args) -> int``. A module's heavy libraries (rich, matplotlib,
plotext, tensorboard) are imported inside its handler, so ``expmate --help`` stays fast and
``import expmate`` never loads any of this.

Only this module turns errors into exit codes: :class:`CliError` carries its own (1: no such
data, 2: usage); a missing optional library is a :class:`MissingExtra`, exit 1 with the
``pip install`` that fixes it; a run that cannot be read (:class:`expmate.runs.RunError`) is
exit 1. Warnings about skipped lines of a run still being written are one line each.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import expmate
from expmate.run_files import RunError, RunFileWarning

EXIT_NO_DATA = 1
EXIT_USAGE = 2

# The subcommands, in the order ``expmate --help`` lists them (module names in this package).
SUBCOMMANDS: tuple[str, ...] = ("ls", "show", "compare", "plot", "tail", "export", "sweep")


class CliError(Exception):
    """A failure the command reports as one line, with its exit code (1: no data, 2: usage)."""

    def __init__(self, message: str, code: int = EXIT_NO_DATA) -> None:
        super().__init__(message)
        self.code = code


class MissingExtra(CliError):
    """An optional library a subcommand needs is not installed."""

    def __init__(self, library: str, extra: str, purpose: str) -> None:
        super().__init__(
            f'{purpose} needs {library}, which is not installed: pip install "expmate[{extra}]"',
            EXIT_NO_DATA,
        )


def require(module: str, *, extra: str, purpose: str) -> object:
    """Import ``module`` or raise :class:`MissingExtra` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(module.split(".")[0], extra, purpose) from None


def build_parser() -> argparse.ArgumentParser:
    """The ``expmate`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="expmate",
        description="Look at experiment runs from their files (list, show, compare, plot, tail, "
        "export) and run sweeps of configs.",
    )
    parser.add_argument("--version", action="version", version=f"expmate {expmate.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"expmate.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``expmate`` command; returns the exit status (0, 1: no such data, 2: usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code or 0)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", RunFileWarning)
            warnings.showwarning = _one_line_warning(args.command)
            return int(handler(args))
    except CliError as exc:
        print(f"expmate {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except RunError as exc:
        print(f"expmate {args.command}: {exc}", file=sys.stderr)
        return EXIT_NO_DATA
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `expmate ls | head`: the reader left; not an error
        return 0


def _one_line_warning(command: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` that writes ``expmate CMD: warning: message`` (no source line)."""

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        print(f"expmate {command}: warning: {message}", file=sys.stderr)

    return show
