"""Weights & Biases: a W&B run (offline unless asked otherwise) with its files in the run directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from expmate.mirrors.base import MetricRow, Mirror, RunInfo, require_package, usable_dir

_MODES = (None, "offline", "online", "disabled", "shared")
STEP_KEY = "step"  # W&B's x axis for every metric: the step of metrics.csv, not W&B's own counter


class WandbMirror(Mirror):
    """Metrics ``split/name`` against ``step``, the config as the run's config, ``best/<key>``
    (and ``best/<key>_step``) in the run's summary at close.

    The step of each value is logged beside it (``define_metric`` makes it the x axis), so values
    of earlier steps logged late (a validation split, a resumed run) are kept, not dropped as
    W&B drops a ``step=`` lower than its last one.

    Args:
        project: the W&B project (default ``"expmate"``).
        entity: the W&B team or user.
        mode: ``"offline"``, ``"online"`` or ``"disabled"``; None reads ``WANDB_MODE`` and
            otherwise is ``"offline"`` (files only, no network, no login; ``wandb sync`` uploads
            them later).
        dir: the directory W&B writes under; None means the run directory (files in
            ``<run_dir>/wandb/``).
        **init_kwargs: more arguments for ``wandb.init`` (``tags``, ``group``, ``settings``, ...).

    Raises:
        ModuleNotFoundError: ``wandb`` is not installed (the message names
            ``pip install "expmate[wandb]"``).
    """

    name = "wandb"
    drain_timeout = 30.0  # starting W&B's service takes seconds, more on a busy machine

    def __init__(
        self,
        project: str | None = None,
        *,
        entity: str | None = None,
        mode: str | None = None,
        dir: str | os.PathLike[str] | None = None,
        **init_kwargs: Any,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, _MODES))}, not {mode!r}")
        require_package("wandb", extra="wandb", mirror=self.name)
        self.project = project
        self.entity = entity
        self.mode = mode
        self.dir = None if dir is None else Path(dir)
        self.init_kwargs = init_kwargs
        self.run: Any = None

    def start(self, run: RunInfo) -> None:
        import wandb

        root = self.dir if self.dir is not None else run.run_dir
        root.mkdir(parents=True, exist_ok=True)
        _keep_caches_writable(root / "wandb")
        kwargs: dict[str, Any] = {
            "project": self.project or "expmate",
            "entity": self.entity,
            "mode": self.mode or os.environ.get("WANDB_MODE") or "offline",
            "dir": str(root),
            "name": run.run_id,
            "config": run.config or {},
            "reinit": "create_new",  # several loggers in one process each keep their own run
            "settings": wandb.Settings(console="off", silent=True),
            **self.init_kwargs,  # what the caller gave wins
        }
        self.run = wandb.init(**kwargs)
        self.run.define_metric(STEP_KEY, hidden=True)
        self.run.define_metric("*", step_metric=STEP_KEY)

    def log_metrics(self, rows: list[MetricRow]) -> None:
        # One W&B history row per run of rows with the same step (a key logged twice in one
        # step starts a new row, so no value overwrites another).
        record: dict[str, Any] = {}
        for step, split, name, value, _ in rows:
            key = f"{split}/{name}"
            if record.get(STEP_KEY) != step or key in record:
                if record:
                    self.run.log(record)
                record = {STEP_KEY: step}
            record[key] = value
        if record:
            self.run.log(record)

    def log_best(self, best: dict[str, dict[str, Any]]) -> None:
        summary: dict[str, Any] = {}
        for key, entry in best.items():
            summary[f"best/{key}"] = entry["value"]
            summary[f"best/{key}_step"] = entry["step"]
        self.run.summary.update(summary)

    def finish(self, outcome: dict[str, Any]) -> None:
        self.run.finish(exit_code=0 if outcome.get("status") == "finished" else 1)


def _keep_caches_writable(fallback: Path) -> None:
    """Point W&B's cache and data directories below ``fallback`` when the defaults (under the
    home directory) cannot be written and no ``WANDB_CACHE_DIR``/``WANDB_DATA_DIR`` is set.

    W&B takes these only from the environment, so the variables are set for this process.
    """
    from wandb import env

    defaults: list[tuple[str, Any, str]] = [
        (env.CACHE_DIR, env.get_cache_dir(), "cache"),
        (env.DATA_DIR, env.get_data_dir(), "data"),
    ]
    for variable, default, folder in defaults:
        if variable not in os.environ and not usable_dir(Path(default)):
            os.environ[variable] = str(fallback / folder)
