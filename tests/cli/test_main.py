"""The ``expmate`` command's entry point: exit codes, help, errors as one line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from expmate import cli

ROOT = Path(__file__).resolve().parents[2]


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a subcommand the command prints its help to stderr and exits 2 (usage)."""
    assert cli.main([]) == 2
    assert "usage: expmate" in capsys.readouterr().err


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown subcommand is a usage error naming it."""
    assert cli.main(["frobnicate"]) == 2
    assert "frobnicate" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"expmate {cli.expmate.__version__}\n"


def _parser_with(handler: object) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="expmate")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("fake").set_defaults(handler=handler)
    return parser


def test_cli_error_is_one_line_with_its_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CliError becomes one stderr line prefixed by the command, and its exit code."""

    def fail(args: argparse.Namespace) -> int:
        raise cli.CliError("no run directory at 'runs/x'", cli.EXIT_NO_DATA)

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(fail))
    assert cli.main(["fake"]) == 1
    assert capsys.readouterr().err == "expmate fake: no run directory at 'runs/x'\n"


def test_missing_extra_names_the_pip_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing optional library names the extra that installs it; exit 1."""

    def plot(args: argparse.Namespace) -> int:
        cli.require("no_such_plotting_lib", extra="plot", purpose="a PNG plot")
        return 0

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(plot))
    assert cli.main(["fake"]) == 1
    assert capsys.readouterr().err == (
        "expmate fake: a PNG plot needs no_such_plotting_lib, which is not installed: "
        'pip install "expmate[plot]"\n'
    )


def test_python_dash_m() -> None:
    """`python -m expmate --version` runs the same command."""
    result = subprocess.run(
        [sys.executable, "-m", "expmate", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, f"expmate {cli.expmate.__version__}\n")
