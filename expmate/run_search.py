"""Which runs a path or pattern names: one run directory, the runs below a directory, a glob
pattern or a sweep's index; :func:`load_run` and :func:`load_runs`.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable
from pathlib import Path

from expmate.run_files import RunError
from expmate.run_reader import Run
from expmate.sweep_grid import SWEEP_INDEX

# Any of these makes a directory a run directory.
RUN_FILES = ("summary.json", "events.jsonl", "metrics.csv", "exp.log", "best.json", "run.json")
_GLOB_CHARS = re.compile(r"[*?\[]")

PathLike = str | os.PathLike[str]


def is_run_dir(path: PathLike) -> bool:
    """Whether ``path`` is a directory holding at least one of the files a logger writes."""
    return any(os.path.isfile(os.path.join(path, name)) for name in RUN_FILES)


def load_run(run_dir: PathLike) -> Run:
    """The run in ``run_dir``; its files are read when first used.

    Raises:
        TypeError: ``run_dir`` is not a path.
        RunError: ``run_dir`` does not exist or holds none of a run's files.
    """
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"run_dir must be a path, not {run_dir!r}")
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"no run directory at {str(path)!r}")
    if not is_run_dir(path):
        raise RunError(
            f"{str(path)!r} is not a run directory (no summary.json, events.jsonl or metrics.csv)"
        )
    return Run(path)


def find_runs(root: PathLike) -> list[Path]:
    """Run directories at or below ``root`` (not descending into runs), sorted by path."""
    if is_run_dir(root):
        return [Path(root)]
    found: list[str] = []
    stack = [os.fspath(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if is_run_dir(entry.path):
                found.append(entry.path)
            else:
                stack.append(entry.path)
    return [Path(path) for path in sorted(found)]


def load_runs(paths_or_glob: PathLike | Iterable[PathLike]) -> list[Run]:
    """The runs named by paths or glob patterns: a run directory, a directory of runs (searched
    below), or a pattern such as ``"runs/lr_*"``. Each run once, in the order found.

    Raises:
        TypeError: not a path, a pattern or an iterable of them.
        RunError: a path that does not exist, a pattern that matches nothing, or a directory
            without runs.
    """
    items = [paths_or_glob] if isinstance(paths_or_glob, (str, os.PathLike)) else paths_or_glob
    runs: list[Run] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"expected a path or a glob pattern, not {item!r}")
        for path in _expand(os.fspath(item)):
            key = os.path.abspath(path)
            if key not in seen:
                seen.add(key)
                runs.append(Run(path))
    return runs


def _expand(item: str) -> list[Path]:
    """The run directories one argument names; a sweep's index names the runs of its sweep."""
    if os.path.basename(item) == SWEEP_INDEX and os.path.isfile(item):
        paths = [os.path.dirname(item) or "."]  # `SWEEP_DIR/*` names the index too
    elif os.path.exists(item):
        paths = [item]
    elif _GLOB_CHARS.search(item):
        paths = sorted(glob.glob(item))
        if not paths:
            raise RunError(f"no path matches {item!r}")
    else:
        raise RunError(f"no run directory at {item!r}")
    runs = [run for path in paths if os.path.isdir(path) for run in find_runs(path)]
    if not runs:
        raise RunError(f"no run directories at or under {item!r}")
    return runs
