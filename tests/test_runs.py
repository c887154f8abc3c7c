"""load_run, load_runs and runs_table on run directories written by the real logger."""

from __future__ import annotations

import math
import os
import socket
import warnings
from pathlib import Path

import pytest

import expmate
from expmate import ExperimentLogger
from expmate.runs import MetricRow, Run, RunError, RunFileWarning, load_run, load_runs, runs_table
from tests.helpers import read_csv
from tests.run_factory import VAL_ACC, VAL_LOSS, make_run


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return load_run(make_run(tmp_path / "lr_0.01"))


def test_exported_lazily_from_the_package() -> None:
    """expmate.load_run, load_runs and runs_table are the functions of expmate.runs."""
    assert (expmate.load_run, expmate.load_runs, expmate.runs_table) == (
        load_run,
        load_runs,
        runs_table,
    )


def test_identity_status_and_times(run: Run) -> None:
    """id, status, times, world size and last step come from summary.json."""
    summary = run.summary
    assert summary is not None
    assert (run.id, run.status, run.world_size, run.last_step) == ("lr_0.01", "finished", 1, 19)
    assert run.start_time == summary["start_time"]
    assert run.end_time == summary["end_time"]
    assert run.duration == summary["end_time"] - summary["start_time"]


def test_metric_rows_and_series(run: Run) -> None:
    """Every row is read back exactly; metric() gives (steps, values) and the wall times."""
    assert len(run.metrics) == 20 + 2 * 4
    assert run.metrics[0] == MetricRow(0, "train", "loss", 1.01, run.metrics[0].wall_time, 0)
    steps, values = run.metric("val", "loss")
    assert (steps, values) == ([4.0, 9.0, 14.0, 19.0], list(VAL_LOSS))
    assert run.metric("val", "accuracy")[1] == list(VAL_ACC)
    times, same = run.metric("val", "loss", x="time")
    assert same == values
    start = run.start_time
    assert start is not None and all(start <= t <= start + 60 for t in times)
    assert run.metric_names() == ["train/loss", "val/accuracy", "val/loss"]


def test_to_pandas_and_polars_hold_the_same_rows(run: Run) -> None:
    """The DataFrames have the columns step, split, name, value, wall_time, rank."""
    frame = run.metrics.to_pandas()
    assert list(frame.columns) == ["step", "split", "name", "value", "wall_time", "rank"]
    assert [tuple(r) for r in frame.itertuples(index=False)] == [tuple(r) for r in run.metrics]
    polars = run.metrics.to_polars()
    assert polars.rows() == [tuple(r) for r in run.metrics]


def test_best_config_summary_and_events(run: Run) -> None:
    """best.json, config.yaml, summary metrics and rank-tagged events are all there."""
    assert run.best["val_loss"] == {"value": 0.45, "step": 14, "mode": "min"}
    assert run.config == {
        "run_id": "lr_0.01",
        "training": {"lr": 0.01, "epochs": 4},
        "model": {"width": 64},
    }
    assert run.metric_summary["val/loss"] == {
        "split": "val",
        "name": "loss",
        "last": 0.5,
        "last_step": 19,
        "best": 0.45,
        "best_step": 14,
        "mode": "min",
    }
    assert run.events[0]["message"] == "Starting experiment: lr_0.01"
    assert {e["rank"] for e in run.events} == {0}
    assert [e["message"] for e in run.events if e["level"] == "WARNING"] == ["LR might be too high"]
    provenance = run.provenance
    assert provenance is not None
    assert (provenance["run_id"], provenance["status"]) == ("lr_0.01", "finished")
    assert [(r["rank"], r["host"]) for r in provenance["ranks"]] == [(0, socket.gethostname())]


def test_a_step_logged_twice_keeps_its_last_value(tmp_path: Path) -> None:
    """After a reopened run logs steps again, metric() holds each step once, the last value."""
    for values in ((1.0, 0.5, 0.25), (0.75, 0.125)):
        with ExperimentLogger(tmp_path, console_output=False) as logger:
            for step, value in enumerate(values, start=1):
                logger.log_metric(step, "val", "loss", value)
    run = load_run(tmp_path)
    assert len(run.metrics) == 5
    assert run.metric("val", "loss") == ([1.0, 2.0, 3.0], [0.75, 0.125, 0.25])


@pytest.mark.parametrize("split", ["val", "val, held out"])
def test_a_resumed_run_reads_as_its_surviving_history(tmp_path: Path, split: str) -> None:
    """After logger.resume(step=3), the dead attempt's rows at steps 3 and 4 are left out (also
    when the split is quoted in the CSV, read record by record), and nothing else."""
    with ExperimentLogger(tmp_path, console_output=False) as dead:
        for step, loss in enumerate([1.0, 0.5, 0.4, 0.01, 0.3]):
            dead.log_metric(step, split, "loss", loss)
    with ExperimentLogger(tmp_path, console_output=False) as resumed:
        resumed.resume(step=3)
        for step, loss in enumerate([0.35, 0.25, 0.2], start=3):
            resumed.log_metric(step, split, "loss", loss)
    run = load_run(tmp_path)
    assert [(r.step, r.value) for r in run.metrics] == [
        (0, 1.0), (1, 0.5), (2, 0.4), (3, 0.35), (4, 0.25), (5, 0.2)
    ]  # fmt: skip
    assert run.metric(split, "loss") == ([0, 1, 2, 3, 4, 5], [1.0, 0.5, 0.4, 0.35, 0.25, 0.2])
    assert run.best[f"{split}_loss"] == {"value": 0.2, "step": 5, "mode": "min"}
    assert len(read_csv(tmp_path / "metrics.csv")) == 1 + 8  # every row is still on disk


def test_unknown_metric_lists_the_ones_that_exist(run: Run) -> None:
    """A metric the run lacks is a RunError naming it and listing those it has."""
    with pytest.raises(RunError) as info:
        run.metric("val", "los")
    assert str(info.value) == (
        "run 'lr_0.01' has no metric val/los; it has: train/loss, val/accuracy, val/loss"
    )
    with pytest.raises(ValueError, match="x must be 'step' or 'time', not 'epoch'"):
        run.metric("val", "loss", x="epoch")


def test_a_run_without_summary_is_read_from_its_files(run: Run) -> None:
    """Runs written before summary.json existed: status unknown, last/best from the rows."""
    expected = run.metric_summary
    (run.path / "summary.json").unlink()
    (run.path / "best.json").unlink()
    old = load_run(run.path)
    assert (old.status, old.id, old.last_step) == ("unknown", "lr_0.01", 19)
    assert old.metric_summary == expected
    first = old.metrics[0].wall_time
    assert old.start_time is not None and old.start_time <= first


def test_a_cut_last_line_is_skipped_with_one_warning(run: Run) -> None:
    """A live or killed run whose files end in a partial line loads; one warning per file."""
    events = len(run.events)
    with (run.path / "metrics.csv").open("a") as f:
        f.write("20,train,loss,0.0")
    with (run.path / "events.jsonl").open("a") as f:
        f.write('{"timestamp": 1.0, "level": "INF')
    fresh = load_run(run.path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(fresh.metrics) == 28
        assert len(fresh.events) == events
    assert [type(w.message) for w in caught] == [RunFileWarning, RunFileWarning]
    assert "metrics.csv: its last line is cut short" in str(caught[0].message)
    assert "events.jsonl: its last line is cut short" in str(caught[1].message)


def test_not_a_run_directory(tmp_path: Path) -> None:
    """A missing path or a directory without run files is a RunError naming it."""
    with pytest.raises(RunError) as missing:
        load_run(tmp_path / "nowhere")
    assert str(missing.value) == f"no run directory at {str(tmp_path / 'nowhere')!r}"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RunError, match="is not a run directory"):
        load_run(tmp_path)
    with pytest.raises(TypeError, match="run_dir must be a path, not 3"):
        load_run(3)  # type: ignore[arg-type]


def test_corrupt_best_or_summary_is_a_run_error(run: Run) -> None:
    """best.json or summary.json that does not parse raises a RunError naming the file."""
    (run.path / "best.json").write_text("{not json")
    with pytest.raises(RunError, match=r"best\.json' is not valid JSON"):
        _ = load_run(run.path).best
    (run.path / "summary.json").write_text("[1, 2]")
    with pytest.raises(RunError, match=r"summary\.json' holds list, not a JSON object"):
        _ = load_run(run.path).summary


def test_load_runs_from_directories_and_globs(tmp_path: Path) -> None:
    """A directory of runs, a glob and explicit paths; each run once; bad patterns raise."""
    for lr in (0.1, 0.01):
        make_run(tmp_path / "sweep" / f"lr_{lr}", lr=lr, epochs=1)
    (tmp_path / "sweep" / "empty_dir").mkdir()
    found = [r.id for r in load_runs(tmp_path / "sweep")]
    assert found == ["lr_0.01", "lr_0.1"]
    again = load_runs([str(tmp_path / "sweep" / "lr_*"), tmp_path / "sweep" / "lr_0.1"])
    assert [r.id for r in again] == ["lr_0.01", "lr_0.1"]
    pattern = str(tmp_path / "sweep" / "lr_9*")
    with pytest.raises(RunError) as nothing:
        load_runs(pattern)
    assert str(nothing.value) == f"no path matches {pattern!r}"
    empty = str(tmp_path / "sweep" / "empty_dir")
    with pytest.raises(RunError) as no_runs:
        load_runs(empty)
    assert str(no_runs.value) == f"no run directories at or under {empty!r}"


def test_runs_table(tmp_path: Path) -> None:
    """One row per run: run columns, flattened config, best and last per metric."""
    make_run(tmp_path / "a", lr=0.1, epochs=2)
    make_run(tmp_path / "b", lr=0.01, epochs=2, fail=True)
    rows = runs_table(os.fspath(tmp_path), frame=None)
    assert [(r["id"], r["status"], r["training.lr"], r["model.width"]) for r in rows] == [
        ("a", "finished", 0.1, 64),
        ("b", "failed", 0.01, 64),
    ]
    assert rows[0]["val/loss.best"] == 0.6 and rows[0]["val/loss.last"] == 0.6
    assert rows[1]["val/loss.last"] == 0.9  # failed in epoch 1's validation
    frame = runs_table(load_runs(tmp_path))
    assert list(frame["id"]) == ["a", "b"]
    assert math.isclose(frame["train/loss.best"][0], 1 / 10 + 0.1)
    assert runs_table(tmp_path, frame="polars")["id"].to_list() == ["a", "b"]
