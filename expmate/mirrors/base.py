"""What a mirror is: the :class:`Mirror` base class and the records it receives.

A mirror copies a run's metrics to a tracker (TensorBoard, W&B, MLflow, or one of your own) while
the run goes on. It is called only on global rank 0, only from its own background thread, one
method at a time, in this order: :meth:`Mirror.start` once, :meth:`Mirror.log_metrics` for each
batch of rows, then :meth:`Mirror.log_best` and :meth:`Mirror.finish` once at close.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, NamedTuple

from expmate.config_keys import dotted_leaves


class MetricRow(NamedTuple):
    """One row of ``metrics.csv``, exactly as written there (reduced under torchrun)."""

    step: int
    split: str
    name: str
    value: float | int
    wall_time: float


class RunInfo(NamedTuple):
    """What a mirror is told about the run when it starts.

    Attributes:
        run_dir: the run directory (trackers' own files go below it unless told otherwise).
        run_id: the run's id (the run directory's name unless given).
        config: the config of :func:`expmate.parse_config` as plain nested values, or None.
    """

    run_dir: Path
    run_id: str
    config: dict[str, Any] | None


class Mirror:
    """Base class of a live mirror: subclass it and pass an instance in ``mirror=[...]``.

    Only :meth:`log_metrics` must be written. A method that raises disables the mirror: one
    warning on stderr, and the values it did not take are counted and reported at close. Nothing
    a mirror does can block or fail the training loop, which only appends rows to a bounded queue.

    Attributes:
        name: how warnings and the close report name this mirror.
        queue_size: rows that may wait for this mirror; beyond that, new rows are dropped (and
            counted) until it catches up.
        interval: seconds between batches (sooner when the queue is half full).
        batch_size: the most rows one ``log_metrics`` call gets (what is counted as forwarded
            is counted a batch at a time).
        drain_timeout: seconds ``close()`` waits for this mirror to take the rows still waiting
            and to finish.

    Example:
        >>> class PrintMirror(Mirror):
        ...     name = "print"
        ...     def log_metrics(self, rows):
        ...         for row in rows:
        ...             print(row.step, f"{row.split}/{row.name}", row.value)
    """

    name: str = "mirror"
    queue_size: int = 100_000
    interval: float = 0.5
    batch_size: int = 1000
    drain_timeout: float = 10.0

    def start(self, run: RunInfo) -> None:
        """Open the tracker's run and record ``run.config`` as its hyperparameters."""

    def log_metrics(self, rows: list[MetricRow]) -> None:
        """Record ``rows`` (in the order they were written to ``metrics.csv``)."""
        raise NotImplementedError

    def log_best(self, best: dict[str, dict[str, Any]]) -> None:
        """Record the run's best values at close, as in ``best.json``:
        ``{"val_loss": {"value": 0.41, "step": 5, "mode": "min"}}``."""

    def finish(self, outcome: dict[str, Any]) -> None:
        """Close the tracker's run. ``outcome`` is ``{"status": "finished"}``,
        ``{"status": "failed", "exception", "message"}`` or ``{"status": "interrupted",
        "signal"}``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def require_package(module: str, *, extra: str, mirror: str) -> None:
    """Raise ModuleNotFoundError naming the pip extra when ``module`` is not installed.

    Only looks for the package (no import: that happens later, on the mirror's own thread).
    """
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(
            f'mirror {mirror!r} needs {module}, which is not installed: pip install "expmate[{extra}]"',
            name=module,
        )


def flat_config(config: dict[str, Any] | None, *, sep: str = ".") -> dict[str, Any]:
    """Nested config values as one level of ``"training.lr": 0.1`` (lists and None as text).

    Example:
        >>> flat_config({"training": {"lr": 0.1, "layers": [2, 3]}, "seed": 1})
        {'training.lr': 0.1, 'training.layers': '[2, 3]', 'seed': 1}
    """
    flat = dotted_leaves(config or {}, sep=sep)
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flat.items()}


def usable_dir(path: Path) -> bool:
    """Whether ``path`` is, or can be made, a directory this process may write in."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)
