"""Global switches read from the environment once, at import.

The package exposes them as module attributes (``expmate.timer`` and friends); code that honours a
switch reads the attribute when it needs it, so assigning ``expmate.timer = False`` at any point in a
script takes effect from the next call on.
"""

from __future__ import annotations

import os

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool, environ: dict[str, str] | None = None) -> bool:
    """Read a boolean switch from the environment.

    Args:
        name: the variable, e.g. ``EXPMATE_TIMER``.
        default: the value when the variable is unset.
        environ: the environment to read (``os.environ`` when None).

    Raises:
        ValueError: the variable holds something that is not a boolean word.
    """
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off")


def env_str(name: str, default: str, environ: dict[str, str] | None = None) -> str:
    """Read a string switch from the environment (``default`` when unset or empty)."""
    env = os.environ if environ is None else environ
    return env.get(name) or default
