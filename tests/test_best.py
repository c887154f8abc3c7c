"""expmate.best: mode detection, best updates, atomic save and reload of best.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from expmate.best import BestTracker, check_mode, detect_mode


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("loss", "min"),
        ("val_loss", "min"),
        ("train/loss", "min"),
        ("trainLoss", "min"),
        ("error", "min"),
        ("err", "min"),
        ("top1_error", "min"),
        ("perplexity", "min"),
        ("ppl", "min"),
        ("mse", "min"),
        ("mae", "min"),
        ("rmse", "min"),
        ("wer", "min"),
        ("cer", "min"),
        ("fid", "min"),
        ("accuracy", "max"),
        ("acc", "max"),
        ("top1_accuracy", "max"),
        ("top5_accuracy", "max"),
        ("f1", "max"),
        ("f1_score", "max"),
        ("auc", "max"),
        ("precision", "max"),
        ("recall", "max"),
        ("iou", "max"),
        ("map", "max"),
        ("bleu", "max"),
        ("rouge1", "max"),
        ("dice", "max"),
        ("lr", None),
        ("learning_rate", None),
        ("epoch_time", None),
        ("grad_norm", None),
    ],
)
def test_detect_mode_from_the_name(name: str, mode: str | None) -> None:
    """Names that say what they measure get min or max; others get None."""
    assert detect_mode(name) == mode


def test_detect_mode_last_recognised_word_wins() -> None:
    """`accuracy_loss` ends in loss (min); `loss_accuracy` ends in accuracy (max)."""
    assert (detect_mode("accuracy_loss"), detect_mode("loss_accuracy")) == ("min", "max")


@pytest.mark.parametrize("mode", [None, "min", "max"])
def test_check_mode_accepts_min_max_and_none(mode: str | None) -> None:
    """min, max and None pass."""
    check_mode(mode)


@pytest.mark.parametrize("mode", ["maximize", "MIN", "", "minimum"])
def test_check_mode_refuses_anything_else_naming_it(mode: str) -> None:
    """Any other mode raises ValueError with the mode quoted."""
    with pytest.raises(ValueError, match=repr(mode)):
        check_mode(mode)


def test_update_keeps_the_better_value() -> None:
    """min keeps the smallest value and its step; a worse value returns False."""
    tracker = BestTracker(None)
    assert tracker.update("val_loss", 0.5, 0, "min") is True
    assert tracker.update("val_loss", 0.6, 1, "min") is False
    assert tracker.update("val_loss", 0.4, 2, "min") is True
    assert tracker.get("val_loss") == {"value": 0.4, "step": 2, "mode": "min"}


def test_update_with_an_equal_value_keeps_the_first_step() -> None:
    """A tie does not move the best to the later step."""
    tracker = BestTracker(None)
    tracker.update("val_acc", 0.9, 3, "max")
    assert tracker.update("val_acc", 0.9, 7, "max") is False
    assert tracker.get("val_acc") == {"value": 0.9, "step": 3, "mode": "max"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_never_become_best(bad: float) -> None:
    """NaN and infinities are refused as a first value and after a finite one."""
    tracker = BestTracker(None)
    assert tracker.update("k", bad, 0, "min") is False
    assert tracker.get("k") is None
    tracker.update("k", 1.0, 1, "min")
    assert tracker.update("k", bad, 2, "min") is False
    assert tracker.update("k", bad, 3, "max") is False
    assert tracker.get("k") == {"value": 1.0, "step": 1, "mode": "min"}


def test_get_returns_a_copy() -> None:
    """Changing the returned dict does not change the tracker."""
    tracker = BestTracker(None)
    tracker.update("k", 1.0, 0, "min")
    tracker.get("k")["value"] = 99  # type: ignore[index]
    assert tracker.get("k") == {"value": 1.0, "step": 0, "mode": "min"}


def test_save_writes_indented_json(tmp_path: Path) -> None:
    """save() writes every best as `{key: {value, step, mode}}` with a trailing newline."""
    tracker = BestTracker(tmp_path / "best.json")
    tracker.update("val_loss", 0.41, 5, "min")
    tracker.save()
    assert (tmp_path / "best.json").read_text(encoding="utf-8") == (
        '{\n  "val_loss": {\n    "value": 0.41,\n    "step": 5,\n    "mode": "min"\n  }\n}\n'
    )
    assert [p.name for p in tmp_path.iterdir()] == ["best.json"]


def test_save_writes_only_when_something_changed(tmp_path: Path) -> None:
    """Without a new best, save() leaves the file alone (a hand edit survives)."""
    path = tmp_path / "best.json"
    tracker = BestTracker(path)
    tracker.update("k", 1.0, 0, "min")
    tracker.save()
    path.write_text("edited", encoding="utf-8")
    tracker.update("k", 2.0, 1, "min")
    tracker.save()
    assert path.read_text(encoding="utf-8") == "edited"


def test_save_replaces_the_file_atomically(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """save() writes a temporary file and os.replace()s it onto best.json."""
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        replaced.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    tracker = BestTracker(tmp_path / "best.json")
    tracker.update("k", 1.0, 0, "min")
    tracker.save()
    ((src, dst),) = replaced
    assert (src.startswith(".best.json.") and src.endswith(".tmp"), dst) == (True, "best.json")


def test_load_restores_saved_bests(tmp_path: Path) -> None:
    """A new tracker on the same file starts from the saved bests."""
    first = BestTracker(tmp_path / "best.json")
    first.update("val_loss", 0.3, 4, "min")
    first.update("val_acc", 0.8, 2, "max")
    first.save()
    second = BestTracker(tmp_path / "best.json")
    assert second.as_dict() == {
        "val_loss": {"value": 0.3, "step": 4, "mode": "min"},
        "val_acc": {"value": 0.8, "step": 2, "mode": "max"},
    }
    assert second.update("val_loss", 0.35, 9, "min") is False


def test_corrupt_file_is_reported_once_and_kept(
    tmp_path: Path, monkeypatch, capfd: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    """An unreadable best.json gives one stderr line; tracking starts afresh; the file is kept."""
    from expmate.sinks import base

    monkeypatch.setattr(base, "_reported", set())
    path = tmp_path / "best.json"
    path.write_text("{not json", encoding="utf-8")
    tracker = BestTracker(path)
    assert tracker.as_dict() == {}
    assert path.read_text(encoding="utf-8") == "{not json"
    err = capfd.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"expmate: reading {path} (kept on disk, tracking starts afresh) failed")


def test_mode_change_starts_the_best_over() -> None:
    """A value logged with the other mode replaces the best and its mode."""
    tracker = BestTracker(None)
    tracker.update("k", 1.0, 0, "min")
    assert tracker.update("k", 0.5, 1, "max") is True
    assert tracker.get("k") == {"value": 0.5, "step": 1, "mode": "max"}


def test_saved_json_parses_strictly(tmp_path: Path) -> None:
    """best.json never holds NaN or Infinity tokens."""
    tracker = BestTracker(tmp_path / "best.json")
    tracker.update("k", float("nan"), 0, "min")
    tracker.update("k", 2.0, 1, "min")
    tracker.update("k", -float("inf"), 2, "min")
    tracker.save()

    def refuse(name: str) -> None:
        raise ValueError(name)

    text = (tmp_path / "best.json").read_text(encoding="utf-8")
    assert json.loads(text, parse_constant=refuse) == {
        "k": {"value": 2.0, "step": 1, "mode": "min"}
    }


def test_a_best_whose_row_was_lost_reads_as_the_saved_one(tmp_path: Path) -> None:
    """as_written(): a best kept out of best.json (its row failed to write) gives way to the
    previous saved best, or to None; a later best that is written reads as itself."""
    tracker = BestTracker(tmp_path / "best.json")
    tracker.update("val_loss", 0.5, 0, "min")
    tracker.write(tracker.settle(tracker.snapshot(), set()))
    tracker.update("val_loss", 0.4, 1, "min")
    tracker.update("val_acc", 0.9, 1, "max")
    lost = {("val_loss", 1, 0.4), ("val_acc", 1, 0.9)}
    tracker.write(tracker.settle(tracker.snapshot(), lost))
    assert tracker.unsaved
    assert tracker.as_written("val_loss", tracker.get("val_loss")) == {
        "value": 0.5,
        "step": 0,
        "mode": "min",
    }
    assert tracker.as_written("val_acc", tracker.get("val_acc")) is None
    assert json.loads((tmp_path / "best.json").read_text()) == {
        "val_loss": {"value": 0.5, "step": 0, "mode": "min"}
    }
    tracker.update("val_loss", 0.3, 2, "min")
    tracker.write(tracker.settle(tracker.snapshot(), set()))
    best = tracker.get("val_loss")
    assert tracker.as_written("val_loss", best) == best == {"value": 0.3, "step": 2, "mode": "min"}
