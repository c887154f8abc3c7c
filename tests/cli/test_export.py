"""``expmate export --tensorboard``: read back with TensorBoard's own reader, value by value."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expmate import ExperimentLogger, cli
from tests.helpers import read_csv
from tests.run_factory import make_run


def _read_back(logdir: Path) -> tuple[dict[str, list[tuple[int, float, float]]], dict[str, Any]]:
    """(tag -> [(step, wall time, value)], hyperparameters) as TensorBoard reads ``logdir``."""
    from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    accumulator = EventAccumulator(str(logdir), size_guidance={TENSORS: 0})
    accumulator.Reload()
    scalars = {
        tag: [
            (e.step, e.wall_time, float(tensor_util.make_ndarray(e.tensor_proto)))
            for e in accumulator.Tensors(tag)
        ]
        for tag in accumulator.Tags()["tensors"]
        if not tag.startswith("_hparams_/")
    }
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}
    return scalars, {"group": info.group_name, "hparams": hparams, "start": info.start_time_secs}


def _expected(run_dir: Path, csv_name: str = "metrics.csv", suffix: str = "") -> dict[str, Any]:
    """metrics.csv as tag -> [(step, wall time, value as float32)], the last row of a step."""
    series: dict[str, dict[int, tuple[float, float]]] = {}
    for step, split, name, value, wall in read_csv(run_dir / csv_name)[1:]:
        series.setdefault(f"{split}/{name}{suffix}", {})[int(step)] = (
            float(wall),
            float(np.float32(float(value))),
        )
    return {tag: [(s, *by_step[s]) for s in sorted(by_step)] for tag, by_step in series.items()}


def _same(a: list[tuple[int, float, float]], b: list[tuple[int, float, float]]) -> bool:
    """Equal point by point, NaN equal to NaN."""
    return len(a) == len(b) and all(
        x[:2] == y[:2] and (x[2] == y[2] or (math.isnan(x[2]) and math.isnan(y[2])))
        for x, y in zip(a, b, strict=True)
    )


def _busy_run(run_dir: Path) -> Path:
    """A real run, reopened to log a step again, NaN and infinity; a rank's own metrics."""
    make_run(run_dir, lr=0.01, width=64)
    with ExperimentLogger(run_dir=run_dir, console_output=False) as logger:
        logger.log_metric(4, "val", "loss", 0.7)  # step 4 again: the later value counts
        logger.log_metric(20, "train", "loss", math.nan)
        logger.log_metric(21, "train", "loss", math.inf)
    with ExperimentLogger(run_dir=run_dir, rank=1, console_output=False) as rank1:
        rank1.log_metric(0, "train", "step_time", 0.25)
        rank1.log_metric(1, "train", "step_time", 0.5)
    return run_dir


def test_export_matches_metrics_csv_value_by_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every series of metrics.csv (and metrics_rank1.csv) with its steps and wall times, the
    best values of best.json, the config as hyperparameters."""
    run_dir = _busy_run(tmp_path / "runs" / "lr0.01")
    logdir = tmp_path / "tb"
    assert cli.main(["export", str(run_dir), "--tensorboard", str(logdir)]) == 0
    scalars, session = _read_back(logdir / "lr0.01")
    expected = _expected(run_dir) | _expected(run_dir, "metrics_rank1.csv", "/rank1")
    best = json.loads((run_dir / "best.json").read_text())
    for key, entry in best.items():
        split, name = key.split("_", 1)
        (wall,) = [w for s, w, _ in expected[f"{split}/{name}"] if s == entry["step"]]
        expected[f"best/{split}/{name}"] = [
            (entry["step"], wall, float(np.float32(entry["value"])))
        ]
    assert sorted(scalars) == sorted(expected) == [
        "best/train/loss", "best/val/accuracy", "best/val/loss", "train/loss",
        "train/step_time/rank1", "val/accuracy", "val/loss",
    ]  # fmt: skip
    for tag, points in expected.items():
        assert _same(scalars[tag], points), tag
    assert scalars["val/loss"][0][2] == float(np.float32(0.7))
    assert session == {
        "group": "lr0.01",
        "hparams": {"training.lr": 0.01, "training.epochs": 4.0, "model.width": 64.0},
        "start": json.loads((run_dir / "summary.json").read_text())["start_time"],
    }
    assert capsys.readouterr().out == (
        f"{run_dir} -> {logdir / 'lr0.01'}: 7 scalar tags, 35 points, 3 hyperparameters\n"
        f"view them: tensorboard --logdir {logdir}\n"
    )


def test_one_tensorboard_run_per_run_and_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs named alike go under their parent's name; a second export needs --overwrite, which
    replaces the event files instead of adding to them."""
    a = make_run(tmp_path / "a" / "seed0", lr=0.1, epochs=1)
    b = make_run(tmp_path / "b" / "seed0", lr=0.2, epochs=1)
    c = make_run(tmp_path / "b" / "seed1", lr=0.3, epochs=1)
    logdir = tmp_path / "tb"
    assert cli.main(["export", str(a), str(tmp_path / "b"), "--tensorboard", str(logdir)]) == 0
    names = sorted(str(p.parent.relative_to(logdir)) for p in logdir.rglob("events.out.tfevents.*"))
    assert names == ["a/seed0", "b/seed0", "seed1"]
    for run, name, lr in ((a, "a/seed0", 0.1), (b, "b/seed0", 0.2), (c, "seed1", 0.3)):
        scalars, session = _read_back(logdir / name)
        assert _same(scalars["val/loss"], _expected(run)["val/loss"])
        assert (session["group"], session["hparams"]["training.lr"]) == (run.name, lr)
    capsys.readouterr()
    again = ["export", str(c), "--tensorboard", str(logdir)]
    assert cli.main(again) == 2
    assert capsys.readouterr().err == (
        f"expmate export: {logdir / 'seed1'} already holds TensorBoard event files; "
        "add --overwrite to replace them\n"
    )
    assert cli.main([*again, "--overwrite"]) == 0
    assert len(list((logdir / "seed1").glob("events.out.tfevents.*"))) == 1
    scalars, _ = _read_back(logdir / "seed1")
    assert _same(scalars["val/loss"], _expected(c)["val/loss"])


def test_missing_tensorboard_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the tensorboard package: one line naming the pip install, exit 1, nothing written."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    run = make_run(tmp_path / "run", epochs=1)
    assert cli.main(["export", str(run), "--tensorboard", str(tmp_path / "tb")]) == 1
    assert capsys.readouterr().err == (
        "expmate export: expmate export --tensorboard needs tensorboard, which is not installed: "
        'pip install "expmate[tensorboard]"\n'
    )
    assert not (tmp_path / "tb").exists()


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "plain").mkdir()
    (tmp_path / "empty").mkdir()
    with ExperimentLogger(run_dir=tmp_path / "empty", console_output=False) as logger:
        logger.info("no metrics")
    corrupt = make_run(tmp_path / "corrupt", epochs=1)
    (corrupt / "best.json").write_text('{"val_loss": {"value": 0.')
    return {"plain": tmp_path / "plain", "empty": tmp_path / "empty", "corrupt": corrupt}


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("missing", "no run directory at '{tmp}/missing'"),
        ("nothing*", "no path matches '{tmp}/nothing*'"),
        ("plain", "no run directories at or under '{tmp}/plain'"),
        ("empty", "no metric rows to export in '{tmp}/empty'"),
        ("corrupt", "'{tmp}/corrupt/best.json' is not valid JSON"),
    ],
)
def test_export_bad_input(
    arg: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a run, a glob matching nothing, an empty run, a corrupt best.json: one line, exit 1,
    nothing written."""
    _bad_inputs(tmp_path)
    assert cli.main(["export", str(tmp_path / arg), "--tensorboard", str(tmp_path / "tb")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expmate export: " + message.format(tmp=tmp_path))
    assert err.count("\n") == 1
    assert not (tmp_path / "tb").exists()


def test_export_skips_an_empty_run_among_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run without metrics among runs with some is skipped with one line; the rest export."""
    bad = _bad_inputs(tmp_path)
    good = make_run(tmp_path / "good", epochs=1)
    args = ["export", str(bad["empty"]), str(good), "--tensorboard", str(tmp_path / "tb")]
    assert cli.main(args) == 0
    assert capsys.readouterr().err == f"expmate export: skipped '{bad['empty']}': no metric rows\n"
    assert [p.name for p in (tmp_path / "tb").iterdir()] == ["good"]


def test_a_cut_last_line_is_one_warning_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run killed inside a write (metrics.csv ends in a cut line) exports its whole rows, with
    one warning line on stderr."""
    run = make_run(tmp_path / "killed", epochs=1)
    with open(run / "metrics.csv", "a", encoding="utf-8") as handle:
        handle.write("5,val,loss,0.4")
    assert cli.main(["export", str(run), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert capsys.readouterr().err == (
        f"expmate export: warning: {run / 'metrics.csv'}: its last line is cut short (the run "
        "is being written or was killed); 14 bytes skipped\n"
    )
    scalars, _ = _read_back(tmp_path / "tb" / "killed")
    assert [step for step, _, _ in scalars["val/loss"]] == [4]
