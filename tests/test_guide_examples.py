"""The logging guide's examples, copied verbatim, run as written and checked against their text.

One test per code example (the distributed section and the complete example are tested with the
distributed and configuration code). Names an example uses but does not define (``epoch``,
``model``, ``train_step``, ...) are provided as small fakes.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import expmate
from expmate import logger as logger_module
from expmate import message_methods, metric_router, rate_limit, spans
from tests.helpers import lines_of, make_logger, read_csv, read_events, transcript

ROOT = Path(__file__).resolve().parents[1]
TIMER = re.compile(r"^Timer \[(?P<name>[^\]]+)\]: (?P<secs>\d+\.\d{4})s$")


def _run(code: str, **names: Any) -> dict[str, Any]:
    """exec() an example in a fresh namespace holding ``names``; return the namespace."""
    namespace: dict[str, Any] = {"__name__": "guide_example", **names}
    exec(compile(code, "<guide example>", "exec"), namespace)
    return namespace


def _messages(run_dir: Path) -> list[str]:
    return [e["message"] for e in read_events(run_dir / "events.jsonl")]


def _console_messages(console: Any) -> list[str]:
    return [line.split(" - ", 2)[2] for line in console.getvalue().splitlines()]


def _csv_rows(run_dir: Path) -> list[list[str]]:
    rows = read_csv(run_dir / "metrics.csv")
    assert rows[0] == ["step", "split", "name", "value", "wall_time"]
    return [row[:4] for row in rows[1:]]


def _best(run_dir: Path) -> Any:
    return json.loads((run_dir / "best.json").read_text(encoding="utf-8"))


class _FakeClock:
    """A perf_counter the example's fake work advances, so stage durations are exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float, result: Any = None) -> Any:
        self.now += seconds
        return result


class _Loss:
    def __init__(self, value: float) -> None:
        self.value = value
        self.backward_calls = 0

    def backward(self) -> None:
        self.backward_calls += 1


class _Model:
    """A callable 'model' that takes a little time and returns a loss with backward()."""

    def __init__(self) -> None:
        self.losses: list[_Loss] = []

    def __call__(self, batch: Any) -> _Loss:
        time.sleep(0.001)
        loss = _Loss(0.5)
        self.losses.append(loss)
        return loss


# ---------------------------------------------------------------------------------------------
# ExperimentLogger: Basic Setup

BASIC_SETUP = """\
from expmate import ExperimentLogger

logger = ExperimentLogger(
    run_dir='runs/exp1',
    rank=0,              # Process rank (for distributed training)
    run_id='exp1',       # Unique run identifier
    log_level='INFO',    # Logging level
    console_output=True  # Print to console
)
"""


def test_basic_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Basic Setup creates runs/exp1, prints to the console and writes run_id exp1 on rank 0."""
    monkeypatch.chdir(tmp_path)
    logger = _run(BASIC_SETUP)["logger"]
    logger.info("hello")
    logger.debug("below INFO")
    logger.close()
    run_dir = tmp_path / "runs" / "exp1"
    (event,) = read_events(run_dir / "events.jsonl")
    assert (event["run_id"], event["rank"], event["message"]) == ("exp1", 0, "hello")
    assert lines_of(run_dir / "exp.log") == transcript([event])
    assert capsys.readouterr().out.splitlines() == transcript([event])


# ---------------------------------------------------------------------------------------------
# Text Logging

LEVEL_METHODS = """\
logger.info("Training started")        # Green in console
logger.debug("Batch processing time")  # Cyan in console
logger.warning("LR might be too high") # Yellow in console
logger.error("NaN detected in loss")   # Red in console
"""


def test_level_specific_methods(tmp_path: Path) -> None:
    """Each level method logs its message, colored green, cyan, yellow and red on the console."""
    logger, console = make_logger(tmp_path, color=True, log_level="DEBUG")
    _run(LEVEL_METHODS, logger=logger)
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [(e["level"], e["message"]) for e in events] == [
        ("INFO", "Training started"),
        ("DEBUG", "Batch processing time"),
        ("WARNING", "LR might be too high"),
        ("ERROR", "NaN detected in loss"),
    ]
    codes = ["\x1b[32m", "\x1b[36m", "\x1b[33m", "\x1b[31m"]
    assert [line.split(" - ", 2)[2] for line in console.getvalue().splitlines()] == [
        f"{code}{e['message']}\x1b[0m" for code, e in zip(codes, events, strict=True)
    ]
    assert lines_of(tmp_path / "exp.log") == transcript(events)


_COLOR_SCRIPT = """\
import sys, tempfile
from expmate import ExperimentLogger
with tempfile.TemporaryDirectory() as d:
    logger = ExperimentLogger(run_dir=d)
    logger.info("Training started")
    logger.close()
    sys.stdout.write(open(d + "/exp.log").read())
"""


def _color_script_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return {**env, "PYTHONPATH": str(ROOT)}


def test_console_is_colored_on_a_terminal() -> None:
    """Connected to a terminal, the console line is colored; the exp.log copy is not."""
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", _COLOR_SCRIPT],
        stdout=secondary,
        stderr=subprocess.PIPE,
        env=_color_script_env(),
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert proc.wait(timeout=60) == 0
    console, logged = b"".join(chunks).decode().splitlines()
    assert console.endswith(" - \x1b[32mINFO\x1b[0m - \x1b[32mTraining started\x1b[0m")
    assert logged.endswith(" - INFO - Training started")


@pytest.mark.parametrize("target", ["pipe", "file"])
def test_colors_are_off_when_redirected(tmp_path: Path, target: str) -> None:
    """Piped to another command or redirected to a file, the console output holds no color."""
    out_path = tmp_path / "out.txt"
    with open(out_path, "wb") as out_file:
        proc = subprocess.run(
            [sys.executable, "-c", _COLOR_SCRIPT],
            stdout=subprocess.PIPE if target == "pipe" else out_file,
            env=_color_script_env(),
            check=True,
            timeout=60,
        )
    output = proc.stdout if target == "pipe" else out_path.read_bytes()
    console, logged = output.decode().splitlines()
    assert console == logged
    assert console.endswith(" - INFO - Training started")


GENERIC_METHOD = """\
logger.log("Training started", level="INFO")
logger.log("Debug message", level="DEBUG")
"""


def test_generic_method(tmp_path: Path) -> None:
    """log(level=) logs at the named level; DEBUG is kept when the logger's level allows it."""
    logger, _ = make_logger(tmp_path, log_level="DEBUG")
    _run(GENERIC_METHOD, logger=logger)
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [(e["level"], e["message"]) for e in events] == [
        ("INFO", "Training started"),
        ("DEBUG", "Debug message"),
    ]


# ---------------------------------------------------------------------------------------------
# Metrics Logging

INDIVIDUAL_METRICS = """\
logger.log_metric(
    step=epoch,         # Training step/epoch
    split='train',      # 'train', 'val', 'test', etc.
    name='loss',        # Metric name
    value=0.5          # Metric value
)

logger.log_metric(step=epoch, split='train', name='accuracy', value=0.95)
logger.log_metric(step=epoch, split='val', name='loss', value=0.4)
"""


def test_log_individual_metrics(tmp_path: Path) -> None:
    """Three log_metric calls give three metrics.csv rows."""
    logger, _ = make_logger(tmp_path)
    _run(INDIVIDUAL_METRICS, logger=logger, epoch=3)
    logger.close()
    assert _csv_rows(tmp_path) == [
        ["3", "train", "loss", "0.5"],
        ["3", "train", "accuracy", "0.95"],
        ["3", "val", "loss", "0.4"],
    ]


MULTIPLE_METRICS = """\
# Log several metrics at once
for name, value in metrics.items():
    logger.log_metric(step=epoch, split='train', name=name, value=value)
"""


def test_log_multiple_metrics(tmp_path: Path) -> None:
    """The loop over a metrics dict writes one row per entry."""
    logger, _ = make_logger(tmp_path)
    metrics = {"loss": 0.25, "accuracy": 0.875, "lr": 0.001}
    _run(MULTIPLE_METRICS, logger=logger, epoch=1, metrics=metrics)
    logger.close()
    assert _csv_rows(tmp_path) == [
        ["1", "train", "loss", "0.25"],
        ["1", "train", "accuracy", "0.875"],
        ["1", "train", "lr", "0.001"],
    ]


# ---------------------------------------------------------------------------------------------
# Best Metrics Tracking

BEST_TRACKING = """\
# Metrics are automatically tracked when logging
logger.log_metric(step=epoch, split='val', name='loss', value=0.5, track_best=True, mode='min')
logger.log_metric(step=epoch, split='val', name='accuracy', value=0.95, track_best=True, mode='max')

# Mode is auto-detected for common metric names
logger.log_metric(step=epoch, split='val', name='loss', value=0.5)  # Auto: mode='min'
logger.log_metric(step=epoch, split='val', name='accuracy', value=0.95)  # Auto: mode='max'
"""


def test_best_metrics_tracking(tmp_path: Path) -> None:
    """Explicit and auto-detected modes agree: loss is min, accuracy is max, in best.json."""
    logger, _ = make_logger(tmp_path)
    _run(BEST_TRACKING, logger=logger, epoch=0)
    _run(BEST_TRACKING.replace("0.5", "0.6").replace("0.95", "0.97"), logger=logger, epoch=1)
    logger.close()
    assert _best(tmp_path) == {
        "val_loss": {"value": 0.5, "step": 0, "mode": "min"},
        "val_accuracy": {"value": 0.97, "step": 1, "mode": "max"},
    }
    assert len(_csv_rows(tmp_path)) == 8


ACCESS_BEST = """\
best_loss = logger.get_best_metric('loss', split='val')
print(f"Best loss: {best_loss['value']} at step {best_loss['step']}")
"""


def test_access_best_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """get_best_metric gives the lowest val loss and its step."""
    logger, _ = make_logger(tmp_path)
    for step, value in enumerate([0.5, 0.3, 0.4]):
        logger.log_metric(step=step, split="val", name="loss", value=value)
    _run(ACCESS_BEST, logger=logger)
    logger.close()
    assert capsys.readouterr().out == "Best loss: 0.3 at step 1\n"


# ---------------------------------------------------------------------------------------------
# Timer

TIMER_EXAMPLE = """\
# Basic timing
with logger.timer('data_loading'):
    data = load_data()
# Logs: "Timer [data_loading]: 0.1234s"

# Get elapsed time
with logger.timer('training_step') as result:
    loss = model(batch)
    loss.backward()
print(f"Step took {result['elapsed']:.4f}s")

# Silent timing (no logging)
with logger.timer('forward', log_result=False) as result:
    output = model(input)
elapsed = result['elapsed']
"""


def test_timer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two timers log `Timer [name]: 0.1234s`; the silent one only fills result['elapsed']."""
    logger, _ = make_logger(tmp_path)
    model = _Model()
    namespace = _run(
        TIMER_EXAMPLE,
        logger=logger,
        load_data=lambda: time.sleep(0.002) or [1, 2, 3],
        model=model,
        batch=[0.0],
    )
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    matches = [TIMER.match(e["message"]) for e in events]
    assert [m["name"] for m in matches if m] == ["data_loading", "training_step"]
    assert len(events) == 2
    assert float(matches[0]["secs"]) >= 0.002  # type: ignore[index]
    step_secs = matches[1]["secs"]  # type: ignore[index]
    assert capsys.readouterr().out == f"Step took {step_secs}s\n"
    assert namespace["data"] == [1, 2, 3]
    assert model.losses[0].backward_calls == 1
    assert namespace["elapsed"] >= 0.001
    assert namespace["output"] is model.losses[1]


GLOBAL_TIMER_SWITCH = """\
import expmate
expmate.timer = False  # Disable all timing
"""


def test_timer_global_control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After `expmate.timer = False` a timer logs nothing and measures 0.0."""
    monkeypatch.setattr(expmate, "timer", True)  # restored after the test
    logger, _ = make_logger(tmp_path)
    _run(GLOBAL_TIMER_SWITCH)
    with logger.timer("data_loading") as result:
        time.sleep(0.002)
    logger.close()
    assert expmate.timer is False
    assert result["elapsed"] == 0.0
    assert lines_of(tmp_path / "events.jsonl") == []


# ---------------------------------------------------------------------------------------------
# Hierarchical Stage Tracking

STAGES = """\
# Simple stage
with logger.stage('training'):
    train_model()
# Logs: "Stage [training] - START" and "Stage [training] - END (10.5s)"

# Stage with metadata
with logger.stage('epoch', epoch=5, lr=0.001):
    train_epoch()
# Logs: "Stage [epoch] (epoch=5, lr=0.001) - START"

# Nested stages create hierarchies
with logger.stage('epoch', epoch=5):
    with logger.stage('train'):
        train_loss = train_epoch()
    with logger.stage('validation'):
        val_loss = validate()
# Logs: "Stage [epoch/train] - START"
#       "Stage [epoch/validation] - START"
"""


def _run_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    clock = _FakeClock()
    monkeypatch.setattr(spans, "time", SimpleNamespace(perf_counter=clock))
    logger, _ = make_logger(tmp_path)
    _run(
        STAGES,
        logger=logger,
        train_model=lambda: clock.work(10.5),
        train_epoch=lambda: clock.work(2.0, 0.3),
        validate=lambda: clock.work(0.25, 0.4),
    )
    logger.close()
    return read_events(tmp_path / "events.jsonl")


def test_hierarchical_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stages log exactly the START/END lines the comments show, with full nested paths."""
    events = _run_stages(tmp_path, monkeypatch)
    assert [e["message"] for e in events] == [
        "Stage [training] - START",
        "Stage [training] - END (10.5s)",
        "Stage [epoch] (epoch=5, lr=0.001) - START",
        "Stage [epoch] - END (2.000s)",
        "Stage [epoch] (epoch=5) - START",
        "Stage [epoch/train] - START",
        "Stage [epoch/train] - END (2.000s)",
        "Stage [epoch/validation] - START",
        "Stage [epoch/validation] - END (0.250s)",
        "Stage [epoch] - END (2.250s)",
    ]
    assert lines_of(tmp_path / "exp.log") == transcript(events)


def test_stage_context_in_jsonl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSONL example: `epoch/train` START carries stage, stage_event and epoch=5."""
    events = _run_stages(tmp_path, monkeypatch)
    (event,) = [e for e in events if e["message"] == "Stage [epoch/train] - START"]
    assert {k: v for k, v in event.items() if k not in ("timestamp", "run_id", "rank")} == {
        "level": "INFO",
        "message": "Stage [epoch/train] - START",
        "stage": "epoch/train",
        "stage_event": "start",
        "epoch": 5,
    }
    assert isinstance(event["timestamp"], float)


# ---------------------------------------------------------------------------------------------
# Rate-Limited Logging

RATE_LIMITED = """\
# Log every 100 iterations
for step in range(10000):
    loss = train_step()
    with logger.log_every(every=100):
        logger.info(f"Step {step}: loss={loss:.4f}")
# Logs to console every 100 steps, but ALL logs go to JSONL

# Time-based rate limiting (every 5 seconds)
for batch in dataloader:
    with logger.log_every(seconds=5.0):
        logger.info(f"Processing batch...")

# Multiple independent rate limiters
for step in range(1000):
    with logger.log_every(every=10, key='loss'):
        logger.info(f"Loss: {loss:.4f}")
    with logger.log_every(every=100, key='detailed'):
        logger.info(f"Detailed metrics: {metrics}")
"""


def test_rate_limited_logging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Console gets every 100th step, every 5 s, every 10th/100th; JSONL gets every message."""
    ticks = iter(range(1000))  # one second passes between two batches
    monkeypatch.setattr(rate_limit, "time", SimpleNamespace(monotonic=lambda: float(next(ticks))))
    logger, console = make_logger(tmp_path)
    _run(
        RATE_LIMITED,
        logger=logger,
        train_step=lambda: 0.25,
        dataloader=range(20),
        metrics={"acc": 0.5},
    )
    logger.close()
    shown = _console_messages(console)
    assert shown[:100] == [f"Step {s}: loss=0.2500" for s in range(0, 10000, 100)]
    assert shown[100:104] == ["Processing batch..."] * 4  # at t = 0, 5, 10, 15 s
    third = shown[104:]
    assert third.count("Loss: 0.2500") == 100
    assert third.count("Detailed metrics: {'acc': 0.5}") == 10
    assert len(third) == 110
    assert lines_of(tmp_path / "exp.log") == console.getvalue().splitlines()
    messages = _messages(tmp_path)
    assert messages[:10000] == [f"Step {s}: loss=0.2500" for s in range(10000)]
    assert messages[10000:10020] == ["Processing batch..."] * 20
    assert messages[10020:] == ["Loss: 0.2500", "Detailed metrics: {'acc': 0.5}"] * 1000


# ---------------------------------------------------------------------------------------------
# Profiling (Deprecated)

PROFILING_NEW = """\
# NEW (recommended)
with logger.timer('data_loading'):
    data = load_data()
"""


def test_profiling_replacement(tmp_path: Path) -> None:
    """The recommended replacement logs one `Timer [data_loading]` line."""
    logger, _ = make_logger(tmp_path)
    namespace = _run(PROFILING_NEW, logger=logger, load_data=lambda: "batch")
    logger.close()
    (message,) = _messages(tmp_path)
    match = TIMER.match(message)
    assert match is not None and match["name"] == "data_loading"
    assert namespace["data"] == "batch"


# ---------------------------------------------------------------------------------------------
# Log Files: the sample contents of exp.log, events.jsonl, metrics.csv and best.json

EXP_LOG_SAMPLE = """\
2025-01-23 14:30:22 - INFO - Starting experiment: exp_20250123_143022
2025-01-23 14:30:23 - INFO - Epoch 0/10: loss=0.5234
2025-01-23 14:30:24 - INFO - Epoch 1/10: loss=0.4567
"""


def _at(text: str) -> float:
    """The Unix time of a local `YYYY-MM-DD HH:MM:SS`."""
    return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S")) + 0.25


def _frozen_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [_at("2025-01-23 14:30:22")]
    clock = SimpleNamespace(time=lambda: now[0])
    monkeypatch.setattr(logger_module, "time", clock)  # events the logger makes itself
    monkeypatch.setattr(message_methods, "time", clock)  # messages, stages, timers
    monkeypatch.setattr(metric_router, "time", clock)  # metric rows
    return now


def test_exp_log_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logged at the sample's times, the messages give exactly the sample exp.log."""
    now = _frozen_clock(monkeypatch)
    logger, _ = make_logger(tmp_path)
    for line in EXP_LOG_SAMPLE.splitlines():
        stamp, _, message = line.split(" - ", 2)
        now[0] = _at(stamp)
        logger.info(message)
    logger.close()
    assert (tmp_path / "exp.log").read_text(encoding="utf-8") == EXP_LOG_SAMPLE


def test_events_jsonl_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each line starts with timestamp, level and message; the timestamp is Unix seconds."""
    now = _frozen_clock(monkeypatch)
    logger, _ = make_logger(tmp_path)
    logger.info("Starting experiment")
    now[0] = _at("2025-01-23 14:30:23")
    logger.info("Epoch 0/10: loss=0.5234")
    logger.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [list(e)[:3] for e in events] == [["timestamp", "level", "message"]] * 2
    assert [
        (datetime.datetime.fromtimestamp(e["timestamp"]).isoformat(timespec="seconds"), e["level"])
        for e in events
    ] == [("2025-01-23T14:30:22", "INFO"), ("2025-01-23T14:30:23", "INFO")]
    assert [e["message"] for e in events] == ["Starting experiment", "Epoch 0/10: loss=0.5234"]


def test_metrics_csv_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample rows come out with the same columns; wall_time is Unix seconds."""
    now = _frozen_clock(monkeypatch)
    logger, _ = make_logger(tmp_path)
    for step, split, value, wall in [
        (0, "train", 0.5234, 1706017822),
        (1, "train", 0.4567, 1706017823),
        (0, "val", 0.4123, 1706017822),
    ]:
        now[0] = float(wall)
        logger.log_metric(step=step, split=split, name="loss", value=value)
    logger.close()
    assert (tmp_path / "metrics.csv").read_text(encoding="utf-8") == (
        "step,split,name,value,wall_time\n"
        "0,train,loss,0.5234,1706017822.000\n"
        "1,train,loss,0.4567,1706017823.000\n"
        "0,val,loss,0.4123,1706017822.000\n"
    )


BEST_JSON_SAMPLE = """\
{
  "val_loss": {
    "value": 0.4123,
    "step": 5,
    "mode": "min"
  },
  "val_accuracy": {
    "value": 0.9567,
    "step": 8,
    "mode": "max"
  }
}
"""


def test_best_json_sample(tmp_path: Path) -> None:
    """Ten epochs with the best loss at 5 and best accuracy at 8 give exactly the sample file."""
    losses = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4123, 0.45, 0.43, 0.42, 0.5]
    accuracies = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.91, 0.92, 0.9567, 0.95]
    logger, _ = make_logger(tmp_path)
    for epoch, (loss, acc) in enumerate(zip(losses, accuracies, strict=True)):
        logger.log_metric(step=epoch, split="val", name="loss", value=loss)
        logger.log_metric(step=epoch, split="val", name="accuracy", value=acc)
    logger.close()
    assert (tmp_path / "best.json").read_text(encoding="utf-8") == BEST_JSON_SAMPLE


# ---------------------------------------------------------------------------------------------
# Best Practices

DESCRIPTIVE_NAMES = """\
# Good
logger.log_metric(step=epoch, split='val', name='top1_accuracy', value=acc1)
logger.log_metric(step=epoch, split='val', name='top5_accuracy', value=acc5)

# Avoid
logger.log_metric(step=epoch, split='val', name='acc', value=acc)
"""


def test_practice_descriptive_metric_names(tmp_path: Path) -> None:
    """top1_accuracy, top5_accuracy and acc are all written and tracked as max."""
    logger, _ = make_logger(tmp_path)
    _run(DESCRIPTIVE_NAMES, logger=logger, epoch=2, acc1=0.7, acc5=0.9, acc=0.7)
    logger.close()
    assert _csv_rows(tmp_path) == [
        ["2", "val", "top1_accuracy", "0.7"],
        ["2", "val", "top5_accuracy", "0.9"],
        ["2", "val", "acc", "0.7"],
    ]
    assert {key: entry["mode"] for key, entry in _best(tmp_path).items()} == {
        "val_top1_accuracy": "max",
        "val_top5_accuracy": "max",
        "val_acc": "max",
    }


APPROPRIATE_FREQUENCY = """\
# Log every epoch for validation metrics
logger.log_metric(step=epoch, split='val', name='loss', value=val_loss)

# Use rate limiting for training metrics in tight loops
for step in range(10000):
    loss = train_step()
    with logger.log_every(every=100):
        logger.info(f"Step {step}: loss={loss:.4f}")
"""


def test_practice_appropriate_frequency(tmp_path: Path) -> None:
    """One val row; 100 of the 10,000 step messages reach the console, all reach JSONL."""
    logger, console = make_logger(tmp_path)
    _run(APPROPRIATE_FREQUENCY, logger=logger, epoch=0, val_loss=0.4, train_step=lambda: 1.0)
    logger.close()
    assert _csv_rows(tmp_path) == [["0", "val", "loss", "0.4"]]
    assert _console_messages(console) == [f"Step {s}: loss=1.0000" for s in range(0, 10000, 100)]
    assert len(_messages(tmp_path)) == 10000


CONSISTENT_SPLITS = """\
# Standard splits
logger.log_metric(step=epoch, split='train', name='loss', value=loss)
logger.log_metric(step=epoch, split='val', name='loss', value=loss)
logger.log_metric(step=epoch, split='test', name='loss', value=loss)
"""


def test_practice_consistent_split_names(tmp_path: Path) -> None:
    """The three splits give three rows and three best.json keys."""
    logger, _ = make_logger(tmp_path)
    _run(CONSISTENT_SPLITS, logger=logger, epoch=4, loss=0.3)
    logger.close()
    assert _csv_rows(tmp_path) == [
        ["4", "train", "loss", "0.3"],
        ["4", "val", "loss", "0.3"],
        ["4", "test", "loss", "0.3"],
    ]
    assert _best(tmp_path) == {
        f"{split}_loss": {"value": 0.3, "step": 4, "mode": "min"}
        for split in ("train", "val", "test")
    }


IMPORTANT_METRICS = """\
# Metrics are automatically tracked with auto-detection
logger.log_metric(step=epoch, split='val', name='loss', value=val_loss)  # mode='min'
logger.log_metric(step=epoch, split='val', name='f1_score', value=f1)    # mode='max'
logger.log_metric(step=epoch, split='val', name='perplexity', value=ppl) # mode='min'
"""


def test_practice_track_important_metrics(tmp_path: Path) -> None:
    """loss and perplexity are tracked as min, f1_score as max, as the comments say."""
    logger, _ = make_logger(tmp_path)
    _run(IMPORTANT_METRICS, logger=logger, epoch=0, val_loss=0.5, f1=0.6, ppl=20.0)
    _run(IMPORTANT_METRICS, logger=logger, epoch=1, val_loss=0.6, f1=0.7, ppl=15.0)
    logger.close()
    assert _best(tmp_path) == {
        "val_loss": {"value": 0.5, "step": 0, "mode": "min"},
        "val_f1_score": {"value": 0.7, "step": 1, "mode": "max"},
        "val_perplexity": {"value": 15.0, "step": 1, "mode": "min"},
    }


CRITICAL_SECTIONS = """\
# Time important operations
with logger.timer('data_loading'):
    batch = next(dataloader)

with logger.timer('forward_backward'):
    loss = model(batch)
    loss.backward()

with logger.timer('optimizer_step'):
    optimizer.step()
"""


def test_practice_timer_for_critical_sections(tmp_path: Path) -> None:
    """Three timers log their three names in order, and the timed code ran."""
    logger, _ = make_logger(tmp_path)
    steps: list[int] = []
    model = _Model()
    _run(
        CRITICAL_SECTIONS,
        logger=logger,
        dataloader=iter([["batch0"], ["batch1"]]),
        model=model,
        optimizer=SimpleNamespace(step=lambda: steps.append(1)),
    )
    logger.close()
    names = [TIMER.match(m)["name"] for m in _messages(tmp_path)]  # type: ignore[index]
    assert names == ["data_loading", "forward_backward", "optimizer_step"]
    assert (model.losses[0].backward_calls, steps) == (1, [1])


HIERARCHICAL_PRACTICE = """\
# Organize training with stages
with logger.stage('epoch', epoch=epoch):
    with logger.stage('train'):
        train_loss = train_epoch()
    with logger.stage('validation'):
        val_loss = validate()
    with logger.stage('checkpoint'):
        save_checkpoint(model)
"""


def test_practice_hierarchical_stages(tmp_path: Path) -> None:
    """Each phase is a child of `epoch` and carries epoch=3."""
    logger, _ = make_logger(tmp_path)
    saved: list[Any] = []
    model = object()
    _run(
        HIERARCHICAL_PRACTICE,
        logger=logger,
        epoch=3,
        train_epoch=lambda: 0.3,
        validate=lambda: 0.4,
        save_checkpoint=saved.append,
        model=model,
    )
    logger.close()
    starts = [e for e in read_events(tmp_path / "events.jsonl") if e["stage_event"] == "start"]
    assert [(e["message"], e["epoch"]) for e in starts] == [
        ("Stage [epoch] (epoch=3) - START", 3),
        ("Stage [epoch/train] - START", 3),
        ("Stage [epoch/validation] - START", 3),
        ("Stage [epoch/checkpoint] - START", 3),
    ]
    assert saved == [model]


# ---------------------------------------------------------------------------------------------
# Advanced Features

CUSTOM_FORMATTING = """\
import logging

# Create custom handler with formatter
handler = logging.FileHandler('custom.log')
handler.setFormatter(
    logging.Formatter('%(asctime)s | %(levelname)s | %(message)s')
)
logger.log_handler = handler
"""


def test_custom_log_formatting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the assignment, messages go to custom.log as `asctime | LEVEL | message`."""
    monkeypatch.chdir(tmp_path)
    logger, _ = make_logger(tmp_path / "run")
    namespace = _run(CUSTOM_FORMATTING, logger=logger)
    logger.info("Training started")
    logger.error("NaN detected in loss")
    logger.close()
    namespace["handler"].close()
    lines = lines_of(tmp_path / "custom.log")
    assert [line.split(" | ", 1)[1] for line in lines] == [
        "INFO | Training started",
        "ERROR | NaN detected in loss",
    ]
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert all(re.fullmatch(stamp, line.split(" | ")[0]) for line in lines)


READING_LOGS = """\
import json
import pandas as pd

# Read metrics CSV
metrics_df = pd.read_csv('runs/exp1/metrics.csv')
train_loss = metrics_df[
    (metrics_df['split'] == 'train') & 
    (metrics_df['name'] == 'loss')
]

# Read events JSONL
events = []
with open('runs/exp1/events.jsonl') as f:
    for line in f:
        events.append(json.loads(line))

# Read best metrics
with open('runs/exp1/best.json') as f:
    best_metrics = json.load(f)
"""  # noqa: W291 - the guide's line ends in a space; the copy stays verbatim


def test_reading_logs_programmatically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pandas and json read back exactly what a run in runs/exp1 logged."""
    pytest.importorskip("pandas")
    monkeypatch.chdir(tmp_path)
    logger, _ = make_logger(Path("runs/exp1"))
    with logger.stage("epoch", epoch=0):
        logger.info("hello", loss=float("nan"))
    for step, (train, val) in enumerate([(0.9, 0.8), (0.7, 0.75)]):
        logger.log_metric(step=step, split="train", name="loss", value=train)
        logger.log_metric(step=step, split="val", name="loss", value=val)
    logger.log_metric(step=1, split="train", name="accuracy", value=0.6)
    logger.close()
    namespace = _run(READING_LOGS)
    train_loss = namespace["train_loss"]
    assert train_loss["step"].tolist() == [0, 1]
    assert train_loss["value"].tolist() == [0.9, 0.7]
    assert len(namespace["metrics_df"]) == 5
    messages = [e["message"] for e in namespace["events"]]
    assert messages[:2] == ["Stage [epoch] (epoch=0) - START", "hello"]
    assert re.fullmatch(r"Stage \[epoch\] - END \(\d+\.\d{3}s\)", messages[2])
    assert len(messages) == 3
    assert namespace["events"][1]["loss"] == "NaN"
    assert namespace["best_metrics"] == {
        "val_loss": {"value": 0.75, "step": 1, "mode": "min"},
        "train_loss": {"value": 0.7, "step": 1, "mode": "min"},
        "train_accuracy": {"value": 0.6, "step": 1, "mode": "max"},
    }
