"""How a run ended: finished, failed or interrupted, as the run's record files store it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from expmate import run_end

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_end, "_signal", None)


def test_finished_by_default() -> None:
    """No exception and no signal: finished."""
    assert run_end.outcome() == {"status": "finished"}


def test_failed_names_type_and_message() -> None:
    """An exception gives its type name and message."""
    assert run_end.outcome(ValueError("bad lr 0.5")) == {
        "status": "failed",
        "exception": "ValueError",
        "message": "bad lr 0.5",
    }


def test_long_message_is_cut() -> None:
    """A huge message is cut to 2,000 characters, ending in '...'."""
    got = run_end.outcome(RuntimeError("x" * 5000))
    assert len(got["message"]) == 2000 and got["message"].endswith("...")


def test_keyboard_interrupt_is_sigint() -> None:
    """Ctrl-C (KeyboardInterrupt) is an interruption by SIGINT, not a failure."""
    assert run_end.outcome(KeyboardInterrupt()) == {"status": "interrupted", "signal": "SIGINT"}


def test_clean_system_exit_is_finished() -> None:
    """sys.exit() / sys.exit(0) is a normal end; sys.exit(3) is a failure."""
    assert run_end.outcome(SystemExit(0)) == {"status": "finished"}
    assert run_end.outcome(SystemExit(3))["status"] == "failed"


def test_noted_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A noted SIGTERM makes the run interrupted by SIGTERM."""
    monkeypatch.setattr(run_end, "_signal", None)  # restored afterwards: no leak to other tests
    run_end.note_signal(signal.SIGTERM)
    assert run_end.noted_signal() == "SIGTERM"
    assert run_end.outcome() == {"status": "interrupted", "signal": "SIGTERM"}


def test_last_value_counts_only_at_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.last_value (an unhandled exception) is read at exit only, never on an explicit close."""
    monkeypatch.setattr(sys, "last_value", KeyError("k"), raising=False)
    assert run_end.outcome() == {"status": "finished"}
    assert run_end.outcome(at_exit=True) == {
        "status": "failed",
        "exception": "KeyError",
        "message": "'k'",
    }


def test_unhandled_exception_seen_at_exit() -> None:
    """In a real interpreter, an exception that ends the script is what an atexit hook sees."""
    code = (
        "import atexit\n"
        "from expmate import run_end\n"
        "atexit.register(lambda: print(run_end.outcome(at_exit=True)))\n"
        "raise ZeroDivisionError('division by zero')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == (
        "{'status': 'failed', 'exception': 'ZeroDivisionError', 'message': 'division by zero'}\n"
    )


def test_signal_name_of_unknown_number() -> None:
    """A number that names no signal is spelled out."""
    assert run_end.signal_name(250) == "signal 250"
