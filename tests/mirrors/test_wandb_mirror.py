"""The W&B mirror: an offline run under the run directory, read back from W&B's own run file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from expmate.mirrors import WandbMirror
from tests.helpers import read_events
from tests.mirrors.conftest import best_series, csv_series, log_a_run, nan_safe
from tests.mirrors.readers import wandb_run

pytest.importorskip("wandb")


def history_series(history: list[dict[str, Any]]) -> dict[str, list[tuple[int, Any]]]:
    """W&B history rows as ``{"split/name": [(step, value), ...]}`` (W&B's own keys left out)."""
    series: dict[str, list[tuple[int, Any]]] = {}
    for row in history:
        for key, value in row.items():
            if not key.startswith("_") and key != "step":
                series.setdefault(key, []).append((row["step"], nan_safe(value)))
    return series


def test_wandb_offline_run_holds_metrics_csv_config_and_best(
    tmp_path: Path, unusable_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Offline by default, with a home directory nothing can be written in: every value of
    metrics.csv at its step, the config, best/<key> in the summary, exit code 0."""
    log_a_run(tmp_path, "wandb")
    run = wandb_run(tmp_path)
    assert history_series(run["history"]) == csv_series(tmp_path)
    del run["config"]["_wandb"]
    assert run["config"] == {
        "run_id": "mirrored",
        "seed": 7,
        "training": {"lr": 0.001},
        "model": {"layers": [2, 3], "name": "mlp"},
    }
    best = {key: points[0] for key, points in best_series(tmp_path).items()}
    assert {k: v for k, v in run["summary"].items() if k.startswith("best/")} == {
        **{key: value for key, (_, value) in best.items()},
        **{f"{key}_step": step for key, (step, _) in best.items()},
    }
    assert run["exit_code"] == 0
    # W&B's cache (its service's logs) went below the run directory, not the unusable home.
    assert os.environ["WANDB_CACHE_DIR"] == str(tmp_path / "wandb" / "cache")
    assert (tmp_path / "wandb" / "cache").is_dir()
    assert [e for e in read_events(tmp_path / "events.jsonl") if e["level"] == "WARNING"] == []
    assert "expmate:" not in capfd.readouterr().err


def test_bad_mode_is_refused() -> None:
    """WandbMirror(mode=...) accepts W&B's modes only, naming the bad one."""
    message = "mode must be one of None, 'offline', 'online', 'disabled', 'shared', not 'offlin'"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        WandbMirror(mode="offlin")
