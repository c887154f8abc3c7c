"""The MLflow mirror: a run in a SQLite store under the run directory, read with MlflowClient."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from expmate.mirrors.mlflow_mirror import mlflow_key
from tests.helpers import read_csv, read_events
from tests.mirrors.conftest import best_series, csv_series, log_a_run, nan_safe

pytest.importorskip("mlflow")


def test_mlflow_run_holds_metrics_csv_config_and_best(
    tmp_path: Path, unusable_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """With a home directory nothing can be written in: one FINISHED run named after the run,
    the config as params, every metrics.csv value with its step and wall time, best/<key>."""
    from mlflow import MlflowClient

    log_a_run(tmp_path, "mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("expmate")
    (run,) = client.search_runs([experiment.experiment_id])
    assert (run.info.run_name, run.info.status) == (tmp_path.name, "FINISHED")
    assert run.data.tags["expmate.run_dir"] == str(tmp_path)
    assert run.data.params == {
        "run_id": "mirrored",
        "seed": "7",
        "training.lr": "0.001",
        "model.layers": "[2, 3]",
        "model.name": "mlp",
    }
    expected = {
        mlflow_key(*key.split("/", 1)): points for key, points in csv_series(tmp_path).items()
    }
    expected.update({mlflow_key(key): points for key, points in best_series(tmp_path).items()})
    assert sorted(run.data.metrics) == sorted(expected)
    history = {
        key: [(m.step, nan_safe(m.value)) for m in client.get_metric_history(run.info.run_id, key)]
        for key in expected
    }
    assert history == expected
    assert "test_ held-out/accuracy" in history  # the comma is not allowed in MLflow names
    walls = [float(row[4]) for row in read_csv(tmp_path / "metrics.csv")[1:] if row[2] == "tokens"]
    stamps = [m.timestamp for m in client.get_metric_history(run.info.run_id, "train/tokens")]
    assert [abs(stamp - wall * 1000) <= 1 for stamp, wall in zip(stamps, walls, strict=True)] == [
        True
    ] * 30
    assert [e for e in read_events(tmp_path / "events.jsonl") if e["level"] == "WARNING"] == []
    assert "expmate:" not in capfd.readouterr().err


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        (("val", "loss"), "val/loss"),
        (("val", "loss@top1"), "val/loss_top1"),
        (("train", "../x"), "train/__/x"),
        (("a//b", "c."), "a/_/b/c."),
        (("ü", "x y"), "ü/x y"),
    ],
)
def test_mlflow_keys_are_names_mlflow_accepts(parts: tuple[str, str], key: str) -> None:
    """Characters MLflow refuses become '_', as do empty, '.' and '..' path segments."""
    from mlflow.utils.validation import _validate_metric_name

    assert mlflow_key(*parts) == key
    _validate_metric_name(key)
    assert re.fullmatch(r"[/\w.\- ]+", key)
