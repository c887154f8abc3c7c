"""Checking the options of :class:`~expmate.ExperimentLogger` and its run directory, before
anything is written."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path


def prepare_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` or fail now, naming it, if it cannot hold the run's files."""
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"run_dir {str(run_dir)!r} exists and is not a directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create run_dir {str(run_dir)!r}: {exc.strerror or exc}") from exc
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise PermissionError(f"run_dir {str(run_dir)!r} is not writable")


def check_options(
    *,
    capture_git: bool | None,
    system_metrics: float | None,
    flush_interval: float,
    sync_timeout: float,
    sync_every: int,
) -> bool:
    """Raise at once, naming the value, for a bad option; return ``capture_git`` resolved.

    Raises:
        TypeError: ``capture_git`` is not a bool or None.
        ValueError: a non-positive interval, timeout or ``sync_every``.
    """
    if capture_git is None:
        capture_git = bool(sys.modules["expmate"].capture_git)
    elif not isinstance(capture_git, bool):
        raise TypeError(f"capture_git must be True, False or None, not {capture_git!r}")
    if system_metrics is not None and not (
        isinstance(system_metrics, (int, float))
        and not isinstance(system_metrics, bool)
        and 0 < system_metrics < math.inf
    ):
        raise ValueError(
            f"system_metrics must be a positive number of seconds or None, not {system_metrics!r}"
        )
    if not (isinstance(flush_interval, (int, float)) and flush_interval > 0):
        raise ValueError(
            f"flush_interval must be a positive number of seconds, not {flush_interval!r}"
        )
    if not (isinstance(sync_timeout, (int, float)) and sync_timeout > 0):
        raise ValueError(f"sync_timeout must be a positive number of seconds, not {sync_timeout!r}")
    if type(sync_every) is not int or sync_every < 1:
        raise ValueError(f"sync_every must be a positive number of steps, not {sync_every!r}")
    return capture_git
