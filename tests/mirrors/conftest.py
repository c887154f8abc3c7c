"""A run logged with mirrors, and metrics.csv / best.json in the form the readers give back."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import expmate
from expmate import ExperimentLogger
from tests.helpers import read_csv

CONFIG_ARGS = ["+training.lr=0.001", "+model.layers=[2, 3]", "+model.name=mlp"]


def log_a_run(run_dir: Path, mirror: Any) -> None:
    """Config, 30 train steps (an int, a NaN), 3 validations, an odd split name; then close."""
    expmate.parse_config(CONFIG_ARGS, defaults={"run_id": "mirrored", "seed": 7})
    logger = ExperimentLogger(run_dir=run_dir, console_output=False, mirror=mirror)
    for step in range(30):
        loss = float("nan") if step == 13 else 1.0 / (step + 1)
        logger.log_metric(step, "train", "loss", loss)
        logger.log_metric(step, "train", "tokens", 1000 * step, track_best=False)
        if step % 10 == 9:
            logger.log_metric(step, "val", "accuracy", [0.5, 0.75, 0.625][step // 10])
            logger.log_metric(step, "val", "loss", [0.9, 0.4, 0.45][step // 10])
    logger.log_metric(30, "test, held-out", "accuracy", 0.7)
    logger.close()


def nan_safe(value: float) -> Any:
    """A value compared exactly; NaN (which equals nothing) as the text 'nan'."""
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def csv_series(run_dir: Path) -> dict[str, list[tuple[int, Any]]]:
    """metrics.csv as ``{"split/name": [(step, value), ...]}``, in file order."""
    series: dict[str, list[tuple[int, Any]]] = {}
    for step, split, name, value, _ in read_csv(run_dir / "metrics.csv")[1:]:
        series.setdefault(f"{split}/{name}", []).append((int(step), nan_safe(float(value))))
    return series


def best_series(run_dir: Path) -> dict[str, list[tuple[int, Any]]]:
    """best.json as ``{"best/val_loss": [(step, value)]}``."""
    best = json.loads((run_dir / "best.json").read_text(encoding="utf-8"))
    return {f"best/{key}": [(e["step"], e["value"])] for key, e in best.items()}


@pytest.fixture
def unusable_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME is a regular file: nothing can be created under ~/.cache, ~/.config, ~/.local."""
    home = tmp_path / "home-is-a-file"
    home.write_text("", encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    for name in (
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "WANDB_CACHE_DIR",
        "WANDB_DATA_DIR",
        "WANDB_CONFIG_DIR",
        "WANDB_DIR",
        "WANDB_MODE",
        "MLFLOW_TRACKING_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    return home
