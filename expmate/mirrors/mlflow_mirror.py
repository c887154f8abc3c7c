"""MLflow: one MLflow run, by default in a SQLite store inside the run directory."""

from __future__ import annotations

import os
import re
import time
from typing import Any

from expmate.mirrors.base import MetricRow, Mirror, RunInfo, flat_config, require_package

_BATCH_METRICS = 1000  # MLflow's limits per log_batch call
_BATCH_PARAMS = 100
_PARAM_CHARS = 6000
_KEY_CHARS = 250
_NOT_IN_KEYS = re.compile(r"[^\w./\- ]")  # what MLflow accepts in a metric or param name
_STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def mlflow_key(*parts: str) -> str:
    """A metric or param name MLflow accepts: ``/``-joined, other characters replaced by ``_``.

    MLflow allows letters, digits, ``_ - . /`` and spaces, and no empty, ``.`` or ``..`` path
    segment; the names of ``metrics.csv`` are kept wherever they already comply.

    Example:
        >>> mlflow_key("val", "loss@top1"), mlflow_key("train", "../x")
        ('val/loss_top1', 'train/__/x')
    """
    segments = _NOT_IN_KEYS.sub("_", "/".join(parts)).split("/")
    cleaned = [s if s not in ("", ".", "..") else "_" * max(1, len(s)) for s in segments]
    return "/".join(cleaned)[:_KEY_CHARS]


class MlflowMirror(Mirror):
    """Metrics ``split/name`` with their steps and wall times, the config as params (dotted
    keys), ``best/<key>`` metrics at the best step at close, and the run's end status.

    Args:
        tracking_uri: the MLflow store or server; None reads ``MLFLOW_TRACKING_URI`` and
            otherwise uses ``sqlite:///<run_dir>/mlflow/mlflow.db`` (artifacts in
            ``<run_dir>/mlflow/artifacts``). Creating a new SQLite store takes seconds (MLflow
            builds its tables); it happens on the mirror's thread, not in training.
        experiment: the MLflow experiment's name (created if missing).
        tags: tags of the MLflow run.

    Raises:
        ModuleNotFoundError: ``mlflow`` is not installed (the message names
            ``pip install "expmate[mlflow]"``).
    """

    name = "mlflow"
    drain_timeout = 60.0  # creating a SQLite store takes seconds, more on a busy machine

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        experiment: str = "expmate",
        tags: dict[str, str] | None = None,
    ) -> None:
        require_package("mlflow", extra="mlflow", mirror=self.name)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.tags = dict(tags or {})
        self.client: Any = None
        self.run_id: str | None = None
        self._keys: dict[tuple[str, str], str] = {}

    def start(self, run: RunInfo) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        artifacts = None
        if not uri:
            store = run.run_dir.resolve() / "mlflow"
            store.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{store / 'mlflow.db'}"
            artifacts = (store / "artifacts").as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        experiment_id = self._experiment_id(artifacts)
        tags = {"expmate.run_dir": str(run.run_dir), **self.tags}
        self.run_id = self.client.create_run(
            experiment_id, run_name=run.run_id, tags=tags
        ).info.run_id
        params: dict[str, str] = {}
        for key, value in flat_config(run.config).items():
            params.setdefault(mlflow_key(key), str(value)[:_PARAM_CHARS])
        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), _BATCH_PARAMS):
            self.client.log_batch(self.run_id, params=items[start : start + _BATCH_PARAMS])

    def _experiment_id(self, artifacts: str | None) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        return str(self.client.create_experiment(self.experiment, artifact_location=artifacts))

    def _log(self, metrics: list[Any]) -> None:
        for start in range(0, len(metrics), _BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + _BATCH_METRICS])

    def log_metrics(self, rows: list[MetricRow]) -> None:
        from mlflow.entities import Metric

        keys = self._keys
        metrics = []
        for step, split, name, value, wall_time in rows:
            key = keys.get((split, name))
            if key is None:
                key = keys[(split, name)] = mlflow_key(split, name)
            metrics.append(Metric(key, float(value), int(wall_time * 1000), step))
        self._log(metrics)

    def log_best(self, best: dict[str, dict[str, Any]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._log(
            [Metric(mlflow_key("best", key), e["value"], now, e["step"]) for key, e in best.items()]
        )

    def finish(self, outcome: dict[str, Any]) -> None:
        status = _STATUS.get(str(outcome.get("status")), "FINISHED")
        self.client.set_terminated(self.run_id, status=status)
