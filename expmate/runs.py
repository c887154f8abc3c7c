"""Reading runs back: :func:`load_run`, :func:`load_runs` and :func:`runs_table`.

A :class:`Run` reads its files on first use of each attribute, so listing thousands of runs
touches only their ``summary.json``. Runs still being written, and runs killed mid-write, load:
a cut last line is skipped with one :class:`RunFileWarning`.

The pieces live in modules of their own: :mod:`expmate.run_reader` (the :class:`Run`),
:mod:`expmate.run_metrics` (its metric rows), :mod:`expmate.run_search` (which runs a path or a
pattern names) and :mod:`expmate.run_table` (one row per run).

Example:
    >>> run = load_run("runs/exp1")  # doctest: +SKIP
    >>> steps, values = run.metric("val", "loss")  # doctest: +SKIP
    >>> run.status, run.best["val_loss"]  # doctest: +SKIP
    ('finished', {'value': 0.41, 'step': 5, 'mode': 'min'})
"""

from __future__ import annotations

from expmate.run_files import MetricRow, RunError, RunFileWarning
from expmate.run_metrics import MetricRows, metric_rows
from expmate.run_reader import Run
from expmate.run_search import RUN_FILES as RUN_FILES
from expmate.run_search import find_runs, is_run_dir, load_run, load_runs
from expmate.run_table import RUN_COLUMNS as RUN_COLUMNS
from expmate.run_table import flatten_config, runs_table
from expmate.run_table import table_rows as table_rows

__all__ = [
    "MetricRow",
    "MetricRows",
    "Run",
    "RunError",
    "RunFileWarning",
    "find_runs",
    "flatten_config",
    "is_run_dir",
    "load_run",
    "load_runs",
    "metric_rows",
    "runs_table",
]
