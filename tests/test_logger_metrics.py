"""ExperimentLogger metrics: metrics.csv rows, best.json, mode detection, bad values, reopening."""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import expmate
from tests.helpers import lines_of, make_logger, read_csv

HEADER = "step,split,name,value,wall_time"
WALL = re.compile(r"^\d+\.\d{3}$")


def _rows(run_dir: Path) -> list[str]:
    """metrics.csv lines without their wall_time column (checked separately)."""
    lines = lines_of(run_dir / "metrics.csv")
    assert lines[0] == HEADER
    return [line.rsplit(",", 1)[0] for line in lines[1:]]


def _best(run_dir: Path) -> Any:
    return json.loads((run_dir / "best.json").read_text(encoding="utf-8"))


def test_metrics_csv_has_header_and_exact_rows(tmp_path: Path) -> None:
    """Rows are `step,split,name,value,wall_time` under one header, in call order."""
    logger, _ = make_logger(tmp_path)
    before = time.time()
    logger.log_metric(step=0, split="train", name="loss", value=0.5234)
    logger.log_metric(step=1, split="train", name="loss", value=0.4567)
    logger.log_metric(step=0, split="val", name="loss", value=0.4123)
    logger.log_metric(step=2, split="train", name="tokens", value=4096)
    after = time.time()
    logger.close()
    assert _rows(tmp_path) == [
        "0,train,loss,0.5234",
        "1,train,loss,0.4567",
        "0,val,loss,0.4123",
        "2,train,tokens,4096",
    ]
    walls = [line.rsplit(",", 1)[1] for line in lines_of(tmp_path / "metrics.csv")[1:]]
    assert all(WALL.match(w) for w in walls)
    assert all(before - 0.001 <= float(w) <= after + 0.001 for w in walls)


def test_metrics_do_not_create_events(tmp_path: Path) -> None:
    """log_metric writes metrics.csv only: events.jsonl and exp.log stay empty."""
    logger, console = make_logger(tmp_path)
    logger.log_metric(step=0, split="val", name="loss", value=0.5)
    logger.close()
    assert lines_of(tmp_path / "events.jsonl") == []
    assert lines_of(tmp_path / "exp.log") == []
    assert console.getvalue() == ""


def test_awkward_split_and_name_round_trip_through_csv(tmp_path: Path) -> None:
    """Commas, quotes, newlines and outer spaces in split/name read back unchanged with csv."""
    odd = [("a,b", 'say "hi"'), ("multi\nline", " padded "), ("cr\r", "plain")]
    logger, _ = make_logger(tmp_path)
    for i, (split, name) in enumerate(odd):
        logger.log_metric(step=i, split=split, name=name, value=i + 0.5)
    logger.close()
    rows = read_csv(tmp_path / "metrics.csv")
    assert rows[0] == HEADER.split(",")
    assert [row[:4] for row in rows[1:]] == [
        ["0", "a,b", 'say "hi"', "0.5"],
        ["1", "multi\nline", " padded ", "1.5"],
        ["2", "cr\r", "plain", "2.5"],
    ]


@pytest.mark.parametrize("value", [0.1 + 0.2, 1e-300, 123456789.12345679, -2.5e17, 1 / 3])
def test_float_values_keep_full_precision(tmp_path: Path, value: float) -> None:
    """A float read back from metrics.csv is exactly the float logged."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="train", name="x", value=value)
    logger.close()
    assert float(read_csv(tmp_path / "metrics.csv")[1][3]) == value


def test_non_finite_values_are_written_but_never_best(tmp_path: Path) -> None:
    """nan, inf and -inf rows are written as such; the best loss stays the finite 0.7."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="val", name="loss", value=float("nan"))
    logger.log_metric(step=1, split="val", name="loss", value=0.7)
    logger.log_metric(step=2, split="val", name="loss", value=float("nan"))
    logger.log_metric(step=3, split="val", name="loss", value=-float("inf"))
    logger.log_metric(step=4, split="val", name="accuracy", value=float("inf"))
    logger.close()
    assert _rows(tmp_path) == [
        "0,val,loss,nan",
        "1,val,loss,0.7",
        "2,val,loss,nan",
        "3,val,loss,-inf",
        "4,val,accuracy,inf",
    ]
    assert _best(tmp_path) == {"val_loss": {"value": 0.7, "step": 1, "mode": "min"}}


def test_best_json_holds_split_name_keys_exactly(tmp_path: Path) -> None:
    """best.json maps `{split}_{name}` to value, step and mode, written with 2-space indent."""
    logger, _ = make_logger(tmp_path)
    for step, (loss, acc) in enumerate([(0.5, 0.90), (0.4123, 0.85), (0.45, 0.9567)]):
        logger.log_metric(step=step, split="val", name="loss", value=loss)
        logger.log_metric(step=step, split="val", name="accuracy", value=acc)
    logger.close()
    assert (tmp_path / "best.json").read_text(encoding="utf-8") == (
        "{\n"
        '  "val_loss": {\n'
        '    "value": 0.4123,\n'
        '    "step": 1,\n'
        '    "mode": "min"\n'
        "  },\n"
        '  "val_accuracy": {\n'
        '    "value": 0.9567,\n'
        '    "step": 2,\n'
        '    "mode": "max"\n'
        "  }\n"
        "}\n"
    )


def test_best_is_available_before_any_flush(tmp_path: Path) -> None:
    """get_best_metric answers from memory right after the call."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=7, split="test", name="loss", value=0.3)
    assert logger.get_best_metric("loss", split="test") == {"value": 0.3, "step": 7, "mode": "min"}
    logger.close()


@pytest.mark.parametrize(
    ("name", "values", "best"),
    [
        ("loss", [0.5, 0.3, 0.4], {"value": 0.3, "step": 1, "mode": "min"}),
        ("accuracy", [0.5, 0.9, 0.7], {"value": 0.9, "step": 1, "mode": "max"}),
        ("f1_score", [0.2, 0.1, 0.6], {"value": 0.6, "step": 2, "mode": "max"}),
        ("perplexity", [30.0, 12.5, 20.0], {"value": 12.5, "step": 1, "mode": "min"}),
        ("top1_error", [0.4, 0.5, 0.35], {"value": 0.35, "step": 2, "mode": "min"}),
        ("top1_accuracy", [0.4, 0.5, 0.35], {"value": 0.5, "step": 1, "mode": "max"}),
        ("lr", [0.1, 0.01, 0.001], None),
    ],
)
def test_mode_is_detected_from_the_name(
    tmp_path: Path, name: str, values: list[float], best: dict | None
) -> None:
    """loss/error/perplexity improve downwards, accuracy/f1 upwards; `lr` is not tracked."""
    logger, _ = make_logger(tmp_path)
    for step, value in enumerate(values):
        logger.log_metric(step=step, split="val", name=name, value=value)
    logger.close()
    assert logger.get_best_metric(name, split="val") == best
    on_disk = _best(tmp_path) if (tmp_path / "best.json").exists() else {}
    assert on_disk.get(f"val_{name}") == best


def test_explicit_mode_tracks_an_unknown_name(tmp_path: Path) -> None:
    """mode='max' tracks `throughput`, which the name alone would leave untracked."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="train", name="throughput", value=10.0, mode="max")
    logger.log_metric(step=1, split="train", name="throughput", value=12.0, mode="max")
    logger.close()
    assert logger.get_best_metric("throughput", split="train") == {
        "value": 12.0,
        "step": 1,
        "mode": "max",
    }


def test_explicit_mode_overrides_the_name(tmp_path: Path) -> None:
    """mode='max' on a metric named loss keeps the largest value."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="val", name="loss", value=0.5, track_best=True, mode="max")
    logger.log_metric(step=1, split="val", name="loss", value=0.9, track_best=True, mode="max")
    logger.close()
    assert logger.get_best_metric("loss") == {"value": 0.9, "step": 1, "mode": "max"}


def test_unknown_mode_is_refused_naming_it(tmp_path: Path) -> None:
    """mode='maximize' raises ValueError naming it, and writes no row."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(ValueError, match="'maximize'"):
        logger.log_metric(step=0, split="val", name="acc", value=0.5, mode="maximize")
    logger.close()
    assert not (tmp_path / "metrics.csv").exists()


def test_track_best_false_leaves_the_metric_untracked(tmp_path: Path) -> None:
    """track_best=False writes the row but keeps no best value."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="val", name="loss", value=0.5, track_best=False)
    logger.close()
    assert _rows(tmp_path) == ["0,val,loss,0.5"]
    assert logger.get_best_metric("loss") is None
    assert not (tmp_path / "best.json").exists()


def test_track_metrics_switch_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """expmate.track_metrics = False: rows are written, no best is kept, no best.json."""
    monkeypatch.setattr(expmate, "track_metrics", False)
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="val", name="loss", value=0.5)
    logger.close()
    assert _rows(tmp_path) == ["0,val,loss,0.5"]
    assert logger.get_best_metric("loss") is None
    assert not (tmp_path / "best.json").exists()


def test_get_best_metric_of_unknown_metric_is_none(tmp_path: Path) -> None:
    """An unknown name or split gives None; the split defaults to val."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="train", name="loss", value=0.5)
    assert logger.get_best_metric("loss") is None
    assert logger.get_best_metric("nothing", split="train") is None
    assert logger.get_best_metric("loss", split="train") == {"value": 0.5, "step": 0, "mode": "min"}
    logger.close()


@pytest.mark.parametrize(
    ("value", "error", "named"),
    [
        (None, TypeError, "None"),
        ("0.5", TypeError, "'0.5'"),
        ([0.5], TypeError, "[0.5]"),
        ({"v": 1}, TypeError, "{'v': 1}"),
        (np.array([1.0, 2.0]), ValueError, "(2,)"),
        (torch.tensor([1.0, 2.0]), ValueError, "(2,)"),
        (torch.tensor(1 + 2j), TypeError, "complex"),
    ],
    ids=["none", "str", "list", "dict", "numpy-array", "tensor", "complex-tensor"],
)
def test_bad_value_is_refused_and_earlier_rows_survive(
    tmp_path: Path, value: Any, error: type[Exception], named: str
) -> None:
    """A bad value raises naming it; the rows and best logged before it are intact after close."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="val", name="loss", value=0.5)
    logger.flush()
    logger.log_metric(step=1, split="val", name="loss", value=0.4)
    with pytest.raises(error) as caught:
        logger.log_metric(step=2, split="val", name="loss", value=value)
    logger.log_metric(step=3, split="val", name="loss", value=0.45)
    logger.close()
    assert named in str(caught.value)
    assert "'val'/'loss'" in str(caught.value)
    assert _rows(tmp_path) == ["0,val,loss,0.5", "1,val,loss,0.4", "3,val,loss,0.45"]
    assert _best(tmp_path) == {"val_loss": {"value": 0.4, "step": 1, "mode": "min"}}


@pytest.mark.parametrize(
    ("value", "error", "named"),
    [
        (10**400, ValueError, "an int of 1329 bits"),
        (-(10**400), ValueError, "an int of 1329 bits"),
        (10**5000, ValueError, "an int of 16610 bits"),
        (Fraction(10**400), ValueError, "Fraction"),
        (Decimal("1e5000"), ValueError, "Decimal('1E+5000')"),
        (np.longdouble("1e4000"), ValueError, "1e+4000"),
        (np.clongdouble(1 + 2j), TypeError, "clongdouble"),
        (np.complex128(1 + 2j), TypeError, "complex"),
    ],
    ids=[
        "huge-int",
        "huge-negative-int",
        "int-over-4300-digits",
        "huge-fraction",
        "huge-decimal",
        "huge-longdouble",
        "clongdouble",
        "complex128",
    ],
)
def test_value_a_float64_cannot_hold_is_refused_and_nothing_written(
    tmp_path: Path, value: Any, error: type[Exception], named: str
) -> None:
    """A finite number too large for a float64, or a complex one, raises TypeError/ValueError
    naming it (never OverflowError or RecursionError) and leaves no row and no best."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(error) as caught:
        logger.log_metric(step=0, split="val", name="loss", value=value)
    logger.close()
    assert type(caught.value) is error
    assert named in str(caught.value)
    assert "'val'/'loss'" in str(caught.value)
    assert not (tmp_path / "metrics.csv").exists()
    assert not (tmp_path / "best.json").exists()


@pytest.mark.parametrize(
    ("value", "written"),
    [(np.longdouble(0.5), "0.5"), (2**1023, str(2**1023)), (Decimal("0.25"), "0.25")],
    ids=["longdouble", "largest-int-power", "decimal"],
)
def test_values_a_float64_holds_are_accepted(tmp_path: Path, value: Any, written: str) -> None:
    """An np.longdouble is rounded to a float64; an int a float64 can hold is written exactly."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="val", name="loss", value=value)
    logger.close()
    assert _rows(tmp_path) == [f"0,val,loss,{written}"]
    assert _best(tmp_path)["val_loss"]["value"] == float(value)


def test_log_metrics_with_one_bad_item_writes_none(tmp_path: Path) -> None:
    """log_metrics checks every item first: a bad value or name raises, and the good items
    before it are not written either."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(TypeError, match="'val'/'accuracy'"):
        logger.log_metrics(0, "val", {"loss": 0.5, "accuracy": "high", "f1": 0.1})
    with pytest.raises(TypeError, match="metric name"):
        logger.log_metrics(0, "val", {"loss": 0.5, 7: 0.1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="bits"):
        logger.log_metrics(0, "val", {"loss": 0.5, "accuracy": 10**400})
    logger.log_metrics(1, "val", {"loss": 0.25})
    logger.close()
    assert _rows(tmp_path) == ["1,val,loss,0.25"]
    assert _best(tmp_path) == {"val_loss": {"value": 0.25, "step": 1, "mode": "min"}}


def test_step_outside_int64_is_refused(tmp_path: Path) -> None:
    """A step no reader can hold (beyond int64) raises ValueError naming it; nothing is written."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(ValueError, match="step must fit in an int64, got 9223372036854775808"):
        logger.log_metric(step=2**63, split="val", name="loss", value=0.5)
    with pytest.raises(ValueError, match="an int of 16610 bits"):
        logger.log_metric(step=10**5000, split="val", name="loss", value=0.5)
    logger.log_metric(step=2**63 - 1, split="val", name="loss", value=0.5)
    logger.close()
    assert _rows(tmp_path) == [f"{2**63 - 1},val,loss,0.5"]


def test_best_json_never_names_a_row_that_could_not_be_written(tmp_path: Path) -> None:
    """metrics.csv on /dev/full: every row fails, so best.json is not written at all (it would
    name steps that are not in metrics.csv); the best stays known in memory."""
    (tmp_path / "metrics.csv").symlink_to("/dev/full")
    logger, _ = make_logger(tmp_path)
    for step, loss in enumerate([0.5, 0.4, 0.3]):
        logger.log_metric(step=step, split="val", name="loss", value=loss)
        logger.flush()
    logger.close()
    assert not (tmp_path / "best.json").exists()
    assert logger.get_best_metric("loss") == {"value": 0.3, "step": 2, "mode": "min"}
    # summary.json says what best.json says: no best whose row is not in metrics.csv.
    entry = json.loads((tmp_path / "summary.json").read_text())["metrics"]["val/loss"]
    assert (entry["best"], entry["best_step"], entry["mode"]) == (None, None, None)
    assert (entry["last"], entry["last_step"]) == (0.3, 2)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (np.float32(0.5), "0.5"),
        (np.float64(0.25), "0.25"),
        (np.int64(3), "3"),
        (np.bool_(True), "1"),
        (True, "1"),
        (False, "0"),
        (np.array(2.5), "2.5"),
        (np.array([1.5]), "1.5"),
        (torch.tensor(0.75), "0.75"),
        (torch.tensor([0.125]), "0.125"),
        (torch.tensor([[4]]), "4"),
        (torch.tensor(True), "1"),
        (torch.tensor(0.5, requires_grad=True) * 1, "0.5"),
    ],
    ids=[
        "np-float32",
        "np-float64",
        "np-int64",
        "np-bool",
        "true",
        "false",
        "np-0d",
        "np-1elem",
        "tensor-0d",
        "tensor-1elem",
        "tensor-int-2d",
        "tensor-bool",
        "tensor-grad",
    ],
)
def test_number_like_values_are_accepted(tmp_path: Path, value: Any, written: str) -> None:
    """numpy scalars, bools, 0-dim and one-element CPU tensors are written as plain numbers."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="train", name="m", value=value)
    logger.close()
    assert _rows(tmp_path) == [f"0,train,m,{written}"]


def test_tensor_value_updates_best(tmp_path: Path) -> None:
    """A 0-dim tensor loss is tracked like a float."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="val", name="loss", value=torch.tensor(0.5))
    logger.log_metric(step=1, split="val", name="loss", value=torch.tensor(0.25))
    logger.close()
    assert _best(tmp_path) == {"val_loss": {"value": 0.25, "step": 1, "mode": "min"}}


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"step": 1.5}, TypeError, "1.5"),
        ({"step": True}, TypeError, "True"),
        ({"step": "3"}, TypeError, "'3'"),
        ({"split": 3}, TypeError, "3"),
        ({"split": ""}, ValueError, "split"),
        ({"name": None}, TypeError, "None"),
    ],
)
def test_bad_step_split_or_name_is_refused(
    tmp_path: Path, kwargs: dict, error: type[Exception], named: str
) -> None:
    """A float/bool step or a non-string split or name raises, naming it; nothing is written."""
    call = {"step": 0, "split": "val", "name": "loss", "value": 0.5, **kwargs}
    logger, _ = make_logger(tmp_path)
    with pytest.raises(error) as caught:
        logger.log_metric(**call)
    logger.close()
    assert named in str(caught.value)
    assert not (tmp_path / "metrics.csv").exists()


def test_numpy_integer_step_is_accepted(tmp_path: Path) -> None:
    """A numpy int64 step is written as a plain integer."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=np.int64(12), split="train", name="loss", value=1.0)
    logger.close()
    assert _rows(tmp_path) == ["12,train,loss,1.0"]


def test_log_metrics_logs_each_entry(tmp_path: Path) -> None:
    """log_metrics(step, split, {...}) writes one row per entry, modes from the names."""
    logger, _ = make_logger(tmp_path)
    logger.log_metrics(3, "val", {"loss": 0.41, "accuracy": 0.9, "lr": 0.001})
    logger.close()
    assert _rows(tmp_path) == ["3,val,loss,0.41", "3,val,accuracy,0.9", "3,val,lr,0.001"]
    assert _best(tmp_path) == {
        "val_loss": {"value": 0.41, "step": 3, "mode": "min"},
        "val_accuracy": {"value": 0.9, "step": 3, "mode": "max"},
    }


def test_log_metrics_refuses_a_non_mapping(tmp_path: Path) -> None:
    """log_metrics with a list raises TypeError naming the type."""
    logger, _ = make_logger(tmp_path)
    with pytest.raises(TypeError, match="list"):
        logger.log_metrics(0, "val", [("loss", 0.5)])  # type: ignore[arg-type]
    logger.close()


def test_reopening_appends_without_a_second_header(tmp_path: Path) -> None:
    """A second logger on the same directory appends rows under the one header."""
    first, _ = make_logger(tmp_path)
    first.log_metric(step=0, split="val", name="loss", value=0.5)
    first.close()
    second, _ = make_logger(tmp_path)
    second.log_metric(step=1, split="val", name="loss", value=0.6)
    second.close()
    assert lines_of(tmp_path / "metrics.csv")[0] == HEADER
    assert _rows(tmp_path) == ["0,val,loss,0.5", "1,val,loss,0.6"]


def test_reopening_reloads_best(tmp_path: Path) -> None:
    """After reopening, a worse value does not replace the stored best; a better one does."""
    first, _ = make_logger(tmp_path)
    first.log_metric(step=0, split="val", name="loss", value=0.5)
    first.close()
    second, _ = make_logger(tmp_path)
    assert second.get_best_metric("loss") == {"value": 0.5, "step": 0, "mode": "min"}
    second.log_metric(step=1, split="val", name="loss", value=0.6)
    second.flush()
    assert _best(tmp_path) == {"val_loss": {"value": 0.5, "step": 0, "mode": "min"}}
    second.log_metric(step=2, split="val", name="loss", value=0.3)
    second.close()
    assert _best(tmp_path) == {"val_loss": {"value": 0.3, "step": 2, "mode": "min"}}


def test_run_directory_holds_no_temporary_files(tmp_path: Path) -> None:
    """After flushes and close only the run's own files are left (best.json's temp is gone)."""
    logger, _ = make_logger(tmp_path)
    logger.info("x")
    logger.log_metric(step=0, split="val", name="loss", value=0.5)
    logger.flush()
    logger.log_metric(step=1, split="val", name="loss", value=0.4)
    logger.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    # config.yaml appears when an earlier test in this process parsed a config.
    assert [name for name in names if name != "config.yaml"] == [
        "attempts.jsonl",
        "best.json",
        "events.jsonl",
        "exp.log",
        "metrics.csv",
        "run.json",
        "summary.json",
    ]


def test_rank_one_metrics_go_to_its_own_csv_without_best_file(tmp_path: Path) -> None:
    """rank=1 writes metrics_rank1.csv and no best.json (best.json belongs to rank 0)."""
    logger, _ = make_logger(tmp_path, rank=1)
    logger.log_metric(step=0, split="val", name="loss", value=0.5)
    logger.close()
    assert lines_of(tmp_path / "metrics_rank1.csv")[1].startswith("0,val,loss,0.5,")
    assert not (tmp_path / "metrics.csv").exists()
    assert not (tmp_path / "best.json").exists()


@pytest.mark.parametrize(
    ("weight", "error", "named"),
    [(-1, ValueError, "-1"), (float("nan"), ValueError, "nan"), ("10", TypeError, "'10'")],
)
def test_bad_weight_is_named_and_nothing_is_lost(
    tmp_path: Path, weight: Any, error: type, named: str
) -> None:
    """A negative, NaN or non-numeric weight raises at once, naming it; earlier rows stay."""
    logger, _ = make_logger(tmp_path)
    logger.log_metric(step=0, split="val", name="loss", value=0.5, weight=32)
    with pytest.raises(error, match=re.escape(named)):
        logger.log_metric(step=1, split="val", name="loss", value=0.4, weight=weight)
    logger.close()
    assert _rows(tmp_path) == ["0,val,loss,0.5"]


def test_bad_reduction_is_named(tmp_path: Path) -> None:
    """An unknown reduction raises at construction and per call, naming the value."""
    with pytest.raises(ValueError, match="'median'"):
        make_logger(tmp_path / "a", reduce="median")
    logger, _ = make_logger(tmp_path / "b")
    with pytest.raises(ValueError, match="'avg'"):
        logger.log_metric(step=0, split="val", name="loss", value=0.5, reduce="avg")
    logger.close()
    assert not (tmp_path / "b" / "metrics.csv").exists()


def test_get_last_metric(tmp_path: Path) -> None:
    """get_last_metric answers the latest value and step, also of an untracked metric."""
    logger, _ = make_logger(tmp_path / "run")
    logger.log_metric(step=0, split="val", name="loss", value=0.4)
    logger.log_metric(step=1, split="val", name="loss", value=0.6)
    logger.log_metric(step=1, split="train", name="lr", value=0.01)
    assert logger.get_last_metric("loss") == {"value": 0.6, "step": 1}
    assert logger.get_last_metric("lr", split="train") == {"value": 0.01, "step": 1}
    assert logger.get_last_metric("accuracy") is None
    logger.close()
