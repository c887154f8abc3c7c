"""ExperimentLogger.resume(step): the history rewinds to a checkpoint, nothing is deleted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from expmate import ExperimentLogger
from expmate.history import read_attempts, surviving_rows
from tests.helpers import read_csv, read_events

DEAD = [1.0, 0.5, 0.4, 0.01, 0.3]  # val/loss of attempt 0 at steps 0..4: a fluke best at 3
RESUMED = [0.35, 0.25, 0.2]  # attempt 1 resumes at step 3


def _log(logger: ExperimentLogger, first: int, losses: list[float]) -> None:
    for step, loss in enumerate(losses, start=first):
        logger.log_metric(step=step, split="val", name="loss", value=loss)
        logger.log_metric(step=step, split="val", name="accuracy", value=1 - loss)


def _rows(run_dir: Path, name: str = "metrics.csv") -> list[list[str]]:
    return [row[:4] for row in read_csv(run_dir / name)[1:]]


def _best(run_dir: Path) -> Any:
    return json.loads((run_dir / "best.json").read_text(encoding="utf-8"))


def _two_attempts(run_dir: Path) -> ExperimentLogger:
    """Attempt 0 logs steps 0..4 and dies (here: closes); attempt 1 reopens and resumes at 3."""
    with ExperimentLogger(run_dir, console_output=False) as dead:
        _log(dead, 0, DEAD)
    logger = ExperimentLogger(run_dir, console_output=False)
    assert logger.get_best_metric("loss") == {"value": 0.01, "step": 3, "mode": "min"}
    logger.resume(step=3)
    return logger


def test_resume_recomputes_the_best_from_the_surviving_history(tmp_path: Path) -> None:
    """The dead attempt's best at step 3 does not survive a resume at 3, in memory or on disk."""
    logger = _two_attempts(tmp_path)
    assert logger.get_best_metric("loss") == {"value": 0.4, "step": 2, "mode": "min"}
    assert logger.get_best_metric("accuracy") == {"value": 0.6, "step": 2, "mode": "max"}
    assert _best(tmp_path) == {
        "val_loss": {"value": 0.4, "step": 2, "mode": "min"},
        "val_accuracy": {"value": 0.6, "step": 2, "mode": "max"},
    }
    _log(logger, 3, RESUMED)
    logger.close()
    assert _best(tmp_path)["val_loss"] == {"value": 0.2, "step": 5, "mode": "min"}


def test_resume_deletes_nothing_and_marks_what_is_superseded(tmp_path: Path) -> None:
    """Every row stays in metrics.csv; the marker after the 10 rows of attempt 0 supersedes its
    steps 3 and 4, so the surviving history is steps 0..2 then the resumed 3..5."""
    logger = _two_attempts(tmp_path)
    _log(logger, 3, RESUMED)
    logger.close()
    rows = _rows(tmp_path)
    assert [(r[0], r[2], float(r[3])) for r in rows[::2]] == [
        *[(str(s), "loss", v) for s, v in enumerate(DEAD)],
        *[(str(s), "loss", v) for s, v in enumerate(RESUMED, start=3)],
    ]
    records = read_attempts(tmp_path / "attempts.jsonl")
    (marker,) = [r for r in records if r["event"] == "resume"]
    assert {k: marker[k] for k in ("attempt", "restart_count", "step", "metrics_rows")} == {
        "attempt": 1,
        "restart_count": 0,
        "step": 3,
        "metrics_rows": 10,
    }
    kept = surviving_rows(rows, records)
    assert [(r[0], float(r[3])) for r in kept[::2]] == [
        ("0", 1.0),
        ("1", 0.5),
        ("2", 0.4),
        ("3", 0.35),
        ("4", 0.25),
        ("5", 0.2),
    ]


def test_resume_event_is_written_whatever_the_level(tmp_path: Path) -> None:
    """The resume is an INFO event with its step, attempt and restart count, also at ERROR."""
    with ExperimentLogger(tmp_path, console_output=False) as dead:
        _log(dead, 0, DEAD)
    with ExperimentLogger(tmp_path, console_output=False, log_level="ERROR") as logger:
        logger.resume(3)
    event = read_events(tmp_path / "events.jsonl")[-1]
    assert {
        k: event[k] for k in ("level", "message", "resume_step", "attempt", "restart_count")
    } == {
        "level": "INFO",
        "message": (
            f"Resumed at step 3 (attempt 1, restart 0): rows of {tmp_path} with step >= 3 "
            "logged before are superseded"
        ),
        "resume_step": 3,
        "attempt": 1,
        "restart_count": 0,
    }


def test_last_values_rewind_too(tmp_path: Path) -> None:
    """get_last_metric of a metric logged at step >= T falls back to its last surviving row."""
    logger = ExperimentLogger(tmp_path, console_output=False)
    _log(logger, 0, DEAD)
    assert logger.get_last_metric("loss") == {"value": 0.3, "step": 4}
    logger.resume(2)  # in the same attempt: its own rows at steps 2..4 are superseded as well
    assert logger.get_last_metric("loss") == {"value": 0.5, "step": 1}
    assert logger.get_best_metric("loss") == {"value": 0.5, "step": 1, "mode": "min"}
    logger.close()


def test_a_metric_with_no_surviving_row_leaves_best_json(tmp_path: Path) -> None:
    """A tracked metric logged only at steps >= T has no best after the resume."""
    with ExperimentLogger(tmp_path, console_output=False) as dead:
        dead.log_metric(step=0, split="val", name="loss", value=1.0)
        dead.log_metric(step=4, split="test", name="loss", value=0.1)
    with ExperimentLogger(tmp_path, console_output=False) as logger:
        logger.resume(3)
        assert logger.get_best_metric("loss", split="test") is None
    assert _best(tmp_path) == {"val_loss": {"value": 1.0, "step": 0, "mode": "min"}}


def test_rows_with_newlines_in_names_are_counted_as_records(tmp_path: Path) -> None:
    """The marker counts CSV records, not lines: a quoted name with a newline is one row."""
    with ExperimentLogger(tmp_path, console_output=False) as dead:
        for step in range(4):
            dead.log_metric(step=step, split="val", name="odd\nloss", value=1.0 / (step + 1))
    with ExperimentLogger(tmp_path, console_output=False) as logger:
        logger.resume(2)
        assert logger.get_best_metric("odd\nloss") == {"value": 0.5, "step": 1, "mode": "min"}
    (marker,) = [r for r in read_attempts(tmp_path / "attempts.jsonl") if r["event"] == "resume"]
    assert marker["metrics_rows"] == 4


def test_rank_one_marks_its_own_metrics_file(tmp_path: Path) -> None:
    """Rank 1's marker goes to attempts_rank1.jsonl and counts metrics_rank1.csv's rows; the
    bests it tracks are recomputed from that file."""
    with ExperimentLogger(tmp_path, rank=1, console_output=False) as logger:
        _log(logger, 0, DEAD[:3])
        logger.resume(1)
        assert logger.get_best_metric("loss") == {"value": 1.0, "step": 0, "mode": "min"}
    records = read_attempts(tmp_path / "attempts_rank1.jsonl")
    assert [(r["step"], r["metrics_rows"]) for r in records if r["event"] == "resume"] == [(1, 6)]
    assert not (tmp_path / "attempts.jsonl").exists()


@pytest.mark.parametrize(
    ("step", "error"), [(1.5, TypeError), ("3", TypeError), (2**63, ValueError)]
)
def test_bad_step_is_refused_and_writes_nothing(tmp_path: Path, step: Any, error: type) -> None:
    """A step that is not an int64 raises, naming it, and no marker is written."""
    with (
        ExperimentLogger(tmp_path, console_output=False) as logger,
        pytest.raises(error, match="step must"),
    ):
        logger.resume(step)
    assert [r["event"] for r in read_attempts(tmp_path / "attempts.jsonl")] == ["start", "end"]


def test_resume_after_close_raises(tmp_path: Path) -> None:
    """A closed logger cannot resume."""
    logger = ExperimentLogger(tmp_path, console_output=False)
    logger.close()
    with pytest.raises(RuntimeError, match="is closed"):
        logger.resume(0)
