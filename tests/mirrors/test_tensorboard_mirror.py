"""The TensorBoard mirror, read back with TensorBoard's own event reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from expmate.mirrors import TensorBoardMirror
from tests.mirrors.conftest import best_series, csv_series, log_a_run, nan_safe
from tests.mirrors.readers import tensorboard_scalars

pytest.importorskip("tensorboard")


def test_tensorboard_holds_metrics_csv_config_and_best(tmp_path: Path) -> None:
    """Every metrics.csv value at its step (64-bit exact), the config as hparams, best/<key>."""
    log_a_run(tmp_path, "tensorboard")
    (events,) = (tmp_path / "tensorboard").iterdir()
    assert events.name.startswith("events.out.tfevents.")
    scalars, hparams = tensorboard_scalars(tmp_path / "tensorboard")
    mirrored = {tag: [(s, nan_safe(v)) for s, v in points] for tag, points in scalars.items()}
    assert mirrored == {**csv_series(tmp_path), **best_series(tmp_path)}
    assert mirrored["train/loss"][2] == (2, 1 / 3)  # not rounded to 32 bits
    assert hparams == {
        "run_id": "mirrored",
        "seed": 7.0,
        "training.lr": 0.001,
        "model.layers": "[2, 3]",
        "model.name": "mlp",
    }


def test_log_dir_can_be_chosen(tmp_path: Path) -> None:
    """TensorBoardMirror(log_dir=...) writes its event file there."""
    log_a_run(tmp_path / "run", TensorBoardMirror(log_dir=tmp_path / "tb"))
    scalars, _ = tensorboard_scalars(tmp_path / "tb")
    assert sorted(scalars) == sorted(
        [*csv_series(tmp_path / "run"), *best_series(tmp_path / "run")]
    )
    assert not (tmp_path / "run" / "tensorboard").exists()
