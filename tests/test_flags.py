"""expmate.flags and the package switches: read from the environment at import, set at runtime."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from expmate.flags import env_bool, env_str

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("true", True),
        (" YES ", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_env_bool_reads_boolean_words(raw: str, value: bool) -> None:
    """1/true/yes/on and 0/false/no/off (any case, spaces trimmed) are read; empty is False."""
    assert env_bool("X", not value, {"X": raw}) is value


def test_env_bool_unset_gives_the_default() -> None:
    """An unset variable gives the default."""
    assert (env_bool("X", True, {}), env_bool("X", False, {})) == (True, False)


def test_env_bool_refuses_other_words_naming_them() -> None:
    """EXPMATE_TIMER=maybe raises ValueError naming the variable and its value."""
    with pytest.raises(ValueError, match=r"EXPMATE_TIMER='maybe' is not a boolean"):
        env_bool("EXPMATE_TIMER", True, {"EXPMATE_TIMER": "maybe"})


def test_env_str_uses_the_default_when_unset_or_empty() -> None:
    """An unset or empty variable gives the default; a set one its value."""
    assert [env_str("L", "INFO", e) for e in ({}, {"L": ""}, {"L": "DEBUG"})] == [
        "INFO",
        "INFO",
        "DEBUG",
    ]


def _flags_in_fresh_process(**env: str) -> str:
    code = "import expmate; print(expmate.timer, expmate.track_metrics, expmate.verbose, expmate.log_level)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EXPMATE_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip()


def test_package_switches_default_on() -> None:
    """Without environment variables every switch is on and the level is INFO."""
    assert _flags_in_fresh_process() == "True True True INFO"


def test_package_switches_are_read_from_the_environment() -> None:
    """EXPMATE_TIMER/TRACK_METRICS/VERBOSE=0 and EXPMATE_LOG_LEVEL=DEBUG set the switches."""
    assert (
        _flags_in_fresh_process(
            EXPMATE_TIMER="0",
            EXPMATE_TRACK_METRICS="false",
            EXPMATE_VERBOSE="off",
            EXPMATE_LOG_LEVEL="DEBUG",
        )
        == "False False False DEBUG"
    )
