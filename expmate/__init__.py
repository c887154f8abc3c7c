"""expmate: experiment logging for PyTorch training scripts, correct under torchrun.

Global switches (each initialised from an environment variable when the package is imported, and
read again by the code that honours it on every call, so an assignment takes effect at once):

- ``expmate.timer`` (``EXPMATE_TIMER``, default True): False turns every ``timer()`` into a no-op
  that measures and logs nothing (``result['elapsed']`` is 0.0). Read when a timer block is entered.
- ``expmate.track_metrics`` (``EXPMATE_TRACK_METRICS``, default True): False turns best-metric
  tracking off everywhere (``metrics.csv`` is still written). Read on every ``log_metric`` call.
- ``expmate.verbose`` (``EXPMATE_VERBOSE``, default True): False silences the console of every
  logger (files are still written). Read on every message.
- ``expmate.log_level`` (``EXPMATE_LOG_LEVEL``, default ``"INFO"``): the level of a logger created
  without an explicit ``log_level``. Read when a logger is constructed.
- ``expmate.capture_git`` (``EXPMATE_CAPTURE_GIT``, default True): False keeps the git state out of
  ``run.json`` (and writes no ``git.diff``) for loggers created without ``capture_git=``. Read
  when a logger is constructed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from expmate.attempts import RunDirInUseError
from expmate.flags import env_bool as _env_bool
from expmate.flags import env_str as _env_str
from expmate.logger import ExperimentLogger

if TYPE_CHECKING:
    from expmate.config import Config, ConfigError, parse_config
    from expmate.runs import load_run, load_runs, runs_table

__version__ = "0.1.0"

timer: bool = _env_bool("EXPMATE_TIMER", True)
track_metrics: bool = _env_bool("EXPMATE_TRACK_METRICS", True)
verbose: bool = _env_bool("EXPMATE_VERBOSE", True)
log_level: str = _env_str("EXPMATE_LOG_LEVEL", "INFO")
capture_git: bool = _env_bool("EXPMATE_CAPTURE_GIT", True)

# name -> the module that defines it, loaded on first use
_LAZY = {
    "Config": "config",
    "ConfigError": "config",
    "parse_config": "config",
    "load_run": "runs",
    "load_runs": "runs",
    "runs_table": "runs",
}


def __getattr__(name: str) -> Any:
    # The configuration and run-reading modules (and what they import) load on first use,
    # keeping ``import expmate`` about as fast as importing the standard logging module.
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(f"expmate.{module}"), name)
    raise AttributeError(f"module 'expmate' has no attribute {name!r}")


__all__ = [
    "Config",
    "ConfigError",
    "ExperimentLogger",
    "RunDirInUseError",
    "__version__",
    "capture_git",
    "load_run",
    "load_runs",
    "log_level",
    "parse_config",
    "runs_table",
    "timer",
    "track_metrics",
    "verbose",
]
