"""CheckpointManager in one process: arguments, retention, restarts, events, faults, resume."""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from expmate import ExperimentLogger
from expmate.sinks import base
from expmate.torch import CheckpointError, CheckpointManager
from tests.helpers import read_events

MANIFEST = "checkpoints.json"


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(6, 4)
        self.drop = torch.nn.Dropout(0.3)
        self.out = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.fc(x)))


class Opaque:
    """An object of the test's own class: ``torch.load(weights_only=True)`` refuses it."""

    def __init__(self, tag: str) -> None:
        self.tag = tag


@pytest.fixture(autouse=True)
def _fresh_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_reported", set())


@pytest.fixture
def logger(tmp_path: Path) -> Iterator[ExperimentLogger]:
    lg = ExperimentLogger(tmp_path / "run", console_output=False)
    yield lg
    lg.close()


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def events(lg: ExperimentLogger, kind: str | None = None) -> list[dict[str, Any]]:
    lg.flush()
    found = [e for e in read_events(lg.run_dir / "events.jsonl") if "checkpoint" in e]
    return [e for e in found if kind is None or e["checkpoint"] == kind]


def save_values(
    manager: CheckpointManager, lg: ExperimentLogger, values: list[float], start: int = 0
) -> None:
    """One checkpoint per value, each after logging the value as val/loss of its step."""
    model = Net()
    for step, value in enumerate(values, start=start):
        lg.log_metric(step, "val", "loss", value)
        manager.save(step, model=model)


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        (
            {"keep_last": 0, "keep_best": 0, "monitor": "val/loss"},
            ValueError,
            "keeps no checkpoint",
        ),
        ({"keep_last": 0}, ValueError, "keeps no checkpoint"),
        ({"keep_last": -1}, ValueError, "keep_last must be a non-negative int, not -1"),
        ({"keep_best": 1.5}, TypeError, "keep_best must be a non-negative int, not 1.5"),
        ({"monitor": "loss"}, ValueError, "monitor must be 'split/name'"),
        ({"monitor": 3}, TypeError, "monitor must be a 'split/name' string"),
        ({"monitor": "val/loss", "mode": "max"}, ValueError, "mode='max' contradicts"),
        ({"monitor": "val/lr"}, ValueError, "cannot tell whether monitor 'val/lr' improves"),
        ({"monitor": "val/loss", "mode": "up"}, ValueError, "mode must be 'min', 'max' or None"),
        ({"mode": "min"}, ValueError, "mode='min' was given without a monitor"),
        ({"every_steps": 0}, ValueError, "every_steps must be positive, not 0"),
        ({"every_steps": 2.0}, TypeError, "every_steps must be a positive int, not 2.0"),
        ({"async_save": "yes"}, TypeError, "async_save must be True or False, not 'yes'"),
        ({"timeout": -1}, ValueError, "timeout must be positive, not -1"),
    ],
)
def test_bad_arguments_raise_and_create_nothing(
    logger: ExperimentLogger, kwargs: dict[str, Any], error: type[Exception], text: str
) -> None:
    """Each bad argument is named in its error, and no checkpoint directory is created."""
    with pytest.raises(error, match=re.escape(text)):
        CheckpointManager(logger=logger, **kwargs)
    assert not (logger.run_dir / "checkpoints").exists()


def test_logger_must_be_an_experiment_logger() -> None:
    """A logger of another kind is a TypeError naming its type."""
    with pytest.raises(
        TypeError, match=re.escape("logger must be an expmate.ExperimentLogger, not object")
    ):
        CheckpointManager(logger=object())


def test_a_mode_matching_the_name_and_one_for_an_unknown_name_are_accepted(
    logger: ExperimentLogger,
) -> None:
    """mode= may repeat what the name says, and gives the direction of a name that says none."""
    assert CheckpointManager(logger=logger, monitor="val/loss", mode="min").mode == "min"
    assert CheckpointManager(logger=logger, monitor="val/lr", mode="max").mode == "max"
    assert CheckpointManager(logger=logger, monitor="val/top1/accuracy").mode == "max"


def test_directory_that_is_a_file(logger: ExperimentLogger, tmp_path: Path) -> None:
    """A file in the directory's place is an error at construction."""
    path = tmp_path / "taken"
    path.write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        CheckpointManager(path, logger=logger)
    assert path.read_text() == "x"


def test_directory_not_writable(
    logger: ExperimentLogger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory this process cannot write to is an error at construction."""
    target = tmp_path / "readonly"
    target.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == target else real_access(p, mode)
    )
    with pytest.raises(PermissionError, match="is not writable"):
        CheckpointManager(target, logger=logger)


def test_directory_on_a_read_only_filesystem(logger: ExperimentLogger, tmp_path: Path) -> None:
    """The same error for a real read-only mount (needs root to mount a tmpfs)."""
    target = tmp_path / "ro"
    target.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(PermissionError, match="is not writable"):
            CheckpointManager(target, logger=logger)
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_monitor_never_logged_names_the_logged_metrics(logger: ExperimentLogger) -> None:
    """save() with a monitor that was never logged raises, listing what was, and writes nothing."""
    manager = CheckpointManager(logger=logger, monitor="val/loss")
    logger.log_metric(0, "train", "loss", 1.0)
    logger.log_metric(0, "val", "accuracy", 0.5)
    with pytest.raises(ValueError) as raised:
        manager.save(0, model=Net())
    assert str(raised.value) == (
        "monitor 'val/loss' was never logged, so checkpoint 0 cannot be ranked; metrics logged "
        "so far (split_name): train_loss, val_accuracy"
    )
    assert files(manager.directory) == []


@pytest.mark.parametrize(
    ("call", "error", "text"),
    [
        ({"step": -1}, ValueError, "step must be a non-negative integer, not -1"),
        ({"step": 1.5}, TypeError, "step"),
        ({"model": object()}, TypeError, "model must have state_dict"),
        ({"optimizer": "sgd"}, TypeError, "optimizer must have state_dict"),
        ({"extra": lambda: None}, TypeError, "cannot be serialised"),
    ],
)
@pytest.mark.parametrize("async_save", [False, True])
def test_bad_save_arguments_write_nothing(
    logger: ExperimentLogger,
    call: dict[str, Any],
    error: type[Exception],
    text: str,
    async_save: bool,
) -> None:
    """A rejected save leaves the directory and the manifest as they were (also with a
    background writer: an unpicklable extra is found before the thread starts)."""
    manager = CheckpointManager(logger=logger, async_save=async_save)
    manager.save(0, model=Net())
    manager.wait()
    before = {name: (manager.directory / name).read_bytes() for name in files(manager.directory)}
    arguments = {"step": 1, "model": Net(), **call}
    with pytest.raises(error, match=text):
        manager.save(arguments.pop("step"), **arguments)
    manager.wait()
    after = {name: (manager.directory / name).read_bytes() for name in files(manager.directory)}
    assert after == before


# ---------------------------------------------------------------------- monitored values


def test_value_of_another_step_is_not_ranked(logger: ExperimentLogger) -> None:
    """A save at a step where the monitor was not logged records no value, warned about once."""
    manager = CheckpointManager(logger=logger, monitor="val/loss", keep_last=5)
    logger.log_metric(0, "val", "loss", 2.0)
    for step in range(3):
        manager.save(step, model=Net())
    assert [(e["step"], e["value"]) for e in manager.list()] == [(0, 2.0), (1, None), (2, None)]
    assert manager.best_step == 0
    warnings = [e["message"] for e in events(logger, "warning")]
    assert warnings == [
        "val/loss was last logged at step 0, not at step 1: checkpoints saved at steps without "
        "it are kept as the latest but never ranked as best (log the metric before calling save())"
    ]


def test_nan_is_recorded_as_null_and_never_best(logger: ExperimentLogger) -> None:
    """A NaN value is written as null in the strict-JSON manifest and never ranks as best."""
    manager = CheckpointManager(logger=logger, monitor="val/loss", keep_last=3)
    save_values(manager, logger, [float("nan"), 3.0, float("inf")])
    manifest = json.loads((manager.directory / MANIFEST).read_text())
    assert [c["value"] for c in manifest["checkpoints"]] == [None, 3.0, None]
    assert manager.best_step == 1


# ---------------------------------------------------------------------- retention


def test_retention_keeps_last_and_best_after_ten_saves(logger: ExperimentLogger) -> None:
    """keep_last=2, keep_best=2: the two newest and the two best survive, nothing else."""
    manager = CheckpointManager(logger=logger, monitor="val/loss", keep_last=2, keep_best=2)
    save_values(manager, logger, [5.0, 3.0, 4.0, 1.0, 6.0, 2.0, 7.0, 8.0, 9.0, 9.5])
    assert files(manager.directory) == [
        MANIFEST,
        "step_00000003.pt",
        "step_00000005.pt",
        "step_00000008.pt",
        "step_00000009.pt",
    ]
    assert (manager.best_step, manager.latest_step) == (3, 9)
    deleted = [e["step"] for e in events(logger, "deleted")]
    assert deleted == [0, 2, 1, 4, 6, 7]


def test_keep_last_none_keeps_everything(logger: ExperimentLogger) -> None:
    """keep_last=None never deletes."""
    manager = CheckpointManager(logger=logger, keep_last=None)
    for step in range(4):
        manager.save(step, model=Net())
    assert [e["step"] for e in manager.list()] == [0, 1, 2, 3]


def test_best_survives_a_restart(tmp_path: Path) -> None:
    """The policy is rebuilt from the manifest: a best from before the restart is still kept."""
    run = tmp_path / "run"
    with ExperimentLogger(run, console_output=False) as lg:
        first = CheckpointManager(logger=lg, monitor="val/loss", keep_last=1, keep_best=1)
        save_values(first, lg, [1.0, 4.0, 5.0])
        first.close()
    with ExperimentLogger(run, console_output=False) as lg:
        again = CheckpointManager(logger=lg, monitor="val/loss", keep_last=1, keep_best=1)
        assert [(e["step"], e["value"]) for e in again.list()] == [(0, 1.0), (2, 5.0)]
        save_values(again, lg, [6.0, 7.0], start=3)
        assert files(again.directory) == [MANIFEST, "step_00000000.pt", "step_00000004.pt"]
        assert again.best_step == 0


def test_manifest_rebuilt_from_the_files(tmp_path: Path) -> None:
    """Without checkpoints.json, the complete files are found again with their values; cut
    writes are ignored, then removed by the next save."""
    run = tmp_path / "run"
    with ExperimentLogger(run, console_output=False) as lg:
        manager = CheckpointManager(logger=lg, monitor="val/loss", keep_last=3)
        save_values(manager, lg, [2.0, 1.0, 3.0])
        manager.close()
    directory = run / "checkpoints"
    (directory / MANIFEST).unlink()
    (directory / ".step_00000003.pt.k2j4.tmp").write_bytes(b"half a checkpoint")
    (directory / ".checkpoints.json.x8.tmp").write_bytes(b"{")
    (directory / "step_00000004").mkdir()  # a sharded write cut before its .metadata
    (directory / "step_00000004" / "__0_0.distcp").write_bytes(b"shard")
    with ExperimentLogger(run, console_output=False) as lg:
        again = CheckpointManager(logger=lg, monitor="val/loss", keep_last=3)
        assert [(e["step"], e["value"], e["seconds"]) for e in again.list()] == [
            (0, 2.0, None),
            (1, 1.0, None),
            (2, 3.0, None),
        ]
        assert again.best_step == 1
        assert again.load_latest()["step"] == 2  # type: ignore[index]
        assert files(directory) == [  # loading removes nothing
            ".checkpoints.json.x8.tmp", ".step_00000003.pt.k2j4.tmp", "step_00000000.pt",
            "step_00000001.pt", "step_00000002.pt", "step_00000004",
        ]  # fmt: skip
        save_values(again, lg, [4.0], start=5)
        assert files(directory) == [
            MANIFEST,
            "step_00000001.pt",
            "step_00000002.pt",
            "step_00000005.pt",
        ]


def test_values_of_another_monitor_are_not_used(tmp_path: Path) -> None:
    """After a change of monitor, old checkpoints keep no value (they are not ranked)."""
    run = tmp_path / "run"
    with ExperimentLogger(run, console_output=False) as lg:
        manager = CheckpointManager(logger=lg, monitor="val/loss", keep_last=3)
        save_values(manager, lg, [2.0])
        manager.close()
    with ExperimentLogger(run, console_output=False) as lg:
        again = CheckpointManager(logger=lg, monitor="val/accuracy", keep_last=3)
        assert [(e["step"], e["value"]) for e in again.list()] == [(0, None)]
        assert again.best_step is None
        assert [e["message"] for e in events(lg, "manifest")] == [
            f"{run / 'checkpoints' / MANIFEST} ranked checkpoints by 'val/loss', not "
            "'val/accuracy': their values are not used to choose the best"
        ]


def test_same_step_saved_twice_is_replaced(logger: ExperimentLogger) -> None:
    """A second save of one step replaces the file; the list holds the step once."""
    manager = CheckpointManager(logger=logger)
    model = Net()
    manager.save(3, model=model, extra="first")
    manager.save(3, model=model, extra="second")
    assert [e["step"] for e in manager.list()] == [3]
    assert manager.load_latest()["extra"] == "second"  # type: ignore[index]


def test_every_steps_and_force(logger: ExperimentLogger) -> None:
    """every_steps skips the other steps without writing; force=True saves anyway."""
    manager = CheckpointManager(logger=logger, every_steps=4, keep_last=None)
    model = Net()
    assert [manager.save(s, model=model) is not None for s in range(6)] == [
        True, False, False, False, True, False,
    ]  # fmt: skip
    assert manager.save(5, model=model, force=True) == manager.directory / "step_00000005.pt"
    assert [e["step"] for e in manager.list()] == [0, 4, 5]


# ---------------------------------------------------------------------- files and events


def test_file_content_and_permissions(logger: ExperimentLogger) -> None:
    """The file holds the documented keys; a replaced file keeps its permissions."""
    manager = CheckpointManager(logger=logger, monitor="val/loss")
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    logger.log_metric(0, "val", "loss", 0.5)
    path = manager.save(0, model=model, optimizer=optimizer, extra={"epoch": 0})
    assert path is not None
    data = torch.load(path, weights_only=True)
    assert sorted(data) == [
        "extra", "format", "model", "monitor", "optimizer", "rng", "step", "world_size",
    ]  # fmt: skip
    assert (data["format"], data["step"], data["world_size"], data["extra"]) == (
        1,
        0,
        1,
        {"epoch": 0},
    )
    assert data["monitor"] == {"name": "val/loss", "value": 0.5, "mode": "min"}
    assert sorted(data["rng"][0]) == ["numpy", "python", "torch"]
    assert all(torch.equal(data["model"][k], v) for k, v in model.state_dict().items())
    os.chmod(path, 0o600)
    manager.save(0, model=model)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_events_record_saves_deletions_and_loads(logger: ExperimentLogger) -> None:
    """saved / deleted / loaded events carry step, file, size and seconds."""
    manager = CheckpointManager(logger=logger, keep_last=1)
    manager.save(0, model=Net())
    manager.save(1, model=Net())
    manager.load_latest()
    found = events(logger)
    assert [(e["checkpoint"], e["step"], e["file"]) for e in found] == [
        ("saved", 0, "checkpoints/step_00000000.pt"),
        ("saved", 1, "checkpoints/step_00000001.pt"),
        ("deleted", 0, "checkpoints/step_00000000.pt"),
        ("loaded", 1, "checkpoints/step_00000001.pt"),
    ]
    size = (manager.directory / "step_00000001.pt").stat().st_size
    assert [e["size"] for e in found] == [size, size, size, size]
    assert all(isinstance(e["seconds"], float) for e in found if e["checkpoint"] != "deleted")
    assert found[1]["message"].startswith(
        "Checkpoint saved: step 1 -> checkpoints/step_00000001.pt ("
    )
    assert manager.list()[0]["size"] == size


# ---------------------------------------------------------------------- loading


def test_corrupt_checkpoint_is_skipped_with_a_warning(logger: ExperimentLogger) -> None:
    """The newest file is cut short: loading warns and loads the previous one; the next save
    moves the corrupt file aside (it is never deleted)."""
    manager = CheckpointManager(logger=logger, keep_last=3)
    model = Net()
    for step in range(3):
        manager.save(step, model=model, extra=step)
    newest = manager.directory / "step_00000002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    assert manager.load_latest()["extra"] == 1  # type: ignore[index]
    [warning] = events(logger, "corrupt")
    assert warning["level"] == "WARNING"
    assert warning["step"] == 2
    assert warning["error"].startswith("rank 0: ValueError: the file has 1000 bytes, the manifest")
    assert manager.latest_step == 1
    assert manager.resume(Net()) == 1
    manager.save(3, model=model)
    assert files(manager.directory) == [
        MANIFEST, "step_00000000.pt", "step_00000001.pt", "step_00000002.pt.corrupt",
        "step_00000003.pt",
    ]  # fmt: skip


def test_garbage_of_the_right_size_is_skipped_too(logger: ExperimentLogger) -> None:
    """A file of the recorded size that torch cannot read is skipped as well."""
    manager = CheckpointManager(logger=logger, keep_last=2)
    manager.save(0, model=Net())
    manager.save(1, model=Net())
    newest = manager.directory / "step_00000001.pt"
    newest.write_bytes(b"\x00" * newest.stat().st_size)
    assert manager.load_latest()["step"] == 0  # type: ignore[index]


def test_none_loadable_is_an_error(logger: ExperimentLogger) -> None:
    """When every checkpoint is corrupt, loading raises instead of starting from scratch."""
    manager = CheckpointManager(logger=logger, keep_last=2)
    manager.save(0, model=Net())
    (manager.directory / "step_00000000.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="none of the 1 checkpoints"):
        manager.resume(Net())


def test_nothing_to_load(logger: ExperimentLogger) -> None:
    """A fresh directory: resume() and load_latest() return None, load_best() too."""
    manager = CheckpointManager(logger=logger, monitor="val/loss")
    assert (manager.resume(Net()), manager.load_latest(), manager.load_best()) == (None, None, None)
    with pytest.raises(ValueError, match=re.escape("load_best() needs a monitor")):
        CheckpointManager(logger=logger).load_best()


def test_weights_only_refusal_is_not_corruption(logger: ExperimentLogger) -> None:
    """An extra of the user's own class: safe loading refuses (no skip, no move aside);
    weights_only=False loads it."""
    manager = CheckpointManager(logger=logger, keep_last=2)
    manager.save(0, model=Net())
    manager.save(1, model=Net(), extra=Opaque("mine"))
    with pytest.raises(pickle.UnpicklingError, match="pass weights_only=False"):
        manager.load_latest()
    assert manager.load_latest(weights_only=False)["extra"].tag == "mine"  # type: ignore[index]
    assert events(logger, "corrupt") == []
    manager.save(2, model=Net())
    assert "step_00000001.pt" in files(manager.directory)


def test_a_model_that_does_not_fit_raises(logger: ExperimentLogger) -> None:
    """A model of another shape is the caller's error: raised, and the checkpoint kept."""
    manager = CheckpointManager(logger=logger)
    manager.save(0, model=Net())
    wider = Net()
    wider.fc = torch.nn.Linear(6, 5)
    with pytest.raises(RuntimeError, match=re.escape("size mismatch for fc.weight")):
        manager.resume(wider)
    manager.save(1, model=Net())
    assert files(manager.directory) == [MANIFEST, "step_00000000.pt", "step_00000001.pt"]


def run_steps(model: Net, optimizer: Any, steps: range) -> list[str]:
    losses = []
    for _ in steps:
        x = torch.randn(8, 6) + float(np.random.rand()) + random.random()
        loss = model(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()).hex())
    return losses


def seeded() -> tuple[Net, Any]:
    torch.manual_seed(0)
    np.random.seed(1)
    random.seed(2)
    model = Net()
    return model, torch.optim.Adam(model.parameters(), lr=0.01)


@pytest.mark.parametrize("restore_rng", [True, False])
def test_resume_continues_bit_for_bit(logger: ExperimentLogger, restore_rng: bool) -> None:
    """Resumed at step 3, the losses equal the uninterrupted run's, bit for bit; without the
    generator states they do not (so the test can tell)."""
    model, optimizer = seeded()
    reference = run_steps(model, optimizer, range(6))
    manager = CheckpointManager(logger=logger)
    model, optimizer = seeded()
    first = run_steps(model, optimizer, range(4))
    manager.save(3, model=model, optimizer=optimizer)
    model, optimizer = seeded()  # a new process would start from its seed again
    step = manager.resume(model, optimizer=optimizer, restore_rng=restore_rng)
    assert step == 3
    rest = run_steps(model, optimizer, range(4, 6))
    assert (first + rest == reference) is restore_rng
    assert first == reference[:4]
    logger.flush()
    [resumed] = [e for e in read_events(logger.run_dir / "events.jsonl") if "resume_step" in e]
    assert (resumed["message"], resumed["resume_step"]) == (
        f"Resumed at step 4 (attempt 0, restart 0): rows of {logger.run_dir} with step >= 4 "
        "logged before are superseded",
        4,
    )
    assert events(logger, "resumed") == []  # the logger's own resume event says it


def test_logger_resume_is_called_with_the_next_step(logger: ExperimentLogger) -> None:
    """Where the logger has resume(step), the manager calls it with the step training goes on at."""
    calls: list[int] = []
    logger.resume = calls.append  # type: ignore[attr-defined]
    manager = CheckpointManager(logger=logger)
    manager.save(7, model=Net())
    assert manager.resume(Net()) == 7
    assert calls == [8]
    assert events(logger, "resumed") == []


def test_map_location_default_is_this_process_device(logger: ExperimentLogger) -> None:
    """Without CUDA, tensors load onto the CPU; map_location= is honoured."""
    manager = CheckpointManager(logger=logger)
    manager.save(0, model=Net())
    loaded = manager.load_latest()
    assert loaded is not None
    assert {t.device.type for t in loaded["model"].values()} == {"cpu"}
    meta = manager.load_latest(map_location="meta")
    assert meta is not None
    assert {t.device.type for t in meta["model"].values()} == {"meta"}


def test_an_unusable_map_location_is_the_callers_error(logger: ExperimentLogger) -> None:
    """A device this machine lacks raises ValueError and never marks the checkpoint corrupt."""
    manager = CheckpointManager(logger=logger)
    manager.save(0, model=Net())
    with pytest.raises(ValueError, match=re.escape("map_location='cuda:7' is not usable here")):
        manager.load_latest(map_location="cuda:7")
    manager.save(1, model=Net())
    assert files(manager.directory) == [MANIFEST, "step_00000000.pt", "step_00000001.pt"]
    assert events(logger, "corrupt") == []


# ---------------------------------------------------------------------- asynchronous saves


def test_async_save_writes_the_same_bytes(logger: ExperimentLogger, tmp_path: Path) -> None:
    """The background writer produces the same file as a synchronous save of the same state."""
    model, optimizer = seeded()
    run_steps(model, optimizer, range(2))
    plain = CheckpointManager(tmp_path / "sync", logger=logger)
    background = CheckpointManager(tmp_path / "async", logger=logger, async_save=True)
    plain.save(2, model=model, optimizer=optimizer, extra={"a": 1})
    path = background.save(2, model=model, optimizer=optimizer, extra={"a": 1})
    assert background.list() == []  # still being written
    background.wait()
    assert path is not None
    assert path.read_bytes() == (tmp_path / "sync" / "step_00000002.pt").read_bytes()
    assert [e["step"] for e in background.list()] == [2]


def test_async_save_keeps_tied_weights_tied(logger: ExperimentLogger, tmp_path: Path) -> None:
    """Tied weights (one storage under two names) stay one storage in an asynchronous save:
    the same bytes as a synchronous save, and tied again once loaded."""
    model = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.Linear(4, 5, bias=False))
    model[1].weight = model[0].weight
    plain = CheckpointManager(tmp_path / "sync", logger=logger)
    background = CheckpointManager(tmp_path / "async", logger=logger, async_save=True)
    plain.save(0, model=model)
    path = background.save(0, model=model)
    background.wait()
    assert path is not None
    assert path.read_bytes() == (tmp_path / "sync" / "step_00000000.pt").read_bytes()
    loaded = background.load_latest()
    assert loaded is not None
    tied = [loaded["model"][k].untyped_storage().data_ptr() for k in ("0.weight", "1.weight")]
    assert tied[0] == tied[1]


def test_async_save_snapshot_is_taken_at_save(logger: ExperimentLogger, tmp_path: Path) -> None:
    """Training on while the write is in flight does not change what is saved."""
    model, optimizer = seeded()
    background = CheckpointManager(tmp_path / "async", logger=logger, async_save=True)
    background.save(0, model=model)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    run_steps(model, optimizer, range(3))
    loaded = background.load_latest()
    assert loaded is not None
    assert all(torch.equal(loaded["model"][k], saved[k]) for k in saved)


# ---------------------------------------------------------------------- a failing disk


def fail_fsync(monkeypatch: pytest.MonkeyPatch, times: int) -> None:
    """The next ``times`` fsyncs of the checkpoint writer fail with ENOSPC."""
    import expmate.durable

    real = os.fsync
    left = [times]

    def fsync(fd: int) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(expmate.durable.os, "fsync", fsync)


@pytest.mark.parametrize("async_save", [False, True])
def test_disk_full_by_injection(
    logger: ExperimentLogger,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    async_save: bool,
) -> None:
    """A failing write: None, the previous checkpoint intact, no temporary file left, one ERROR
    event per failure, one line on stderr; the next save works."""
    manager = CheckpointManager(logger=logger, keep_last=1, async_save=async_save)
    model = Net()
    manager.save(0, model=model)
    manager.wait()
    before = (manager.directory / "step_00000000.pt").read_bytes()
    fail_fsync(monkeypatch, 2)
    results = [manager.save(step, model=model) for step in (1, 2)]
    manager.wait()
    assert results == (
        [manager.directory / f"step_0000000{s}.pt" for s in (1, 2)] if async_save else [None, None]
    )
    assert files(manager.directory) == [MANIFEST, "step_00000000.pt"]
    assert (manager.directory / "step_00000000.pt").read_bytes() == before
    failed = events(logger, "failed")
    assert [(e["level"], e["step"]) for e in failed] == [("ERROR", 1), ("ERROR", 2)]
    assert failed[0]["message"] == (
        "Checkpoint save failed at step 1 (OSError: [Errno 28] No space left on device); the "
        "previous checkpoints are intact (the latest is step 0) and training continues"
    )
    assert capfd.readouterr().err == (
        f"expmate: saving checkpoints in {manager.directory} failed (OSError: [Errno 28] No space "
        "left on device); training continues, further failures of it are not reported\n"
    )
    manager.save(3, model=model)
    manager.wait()
    assert files(manager.directory) == [MANIFEST, "step_00000003.pt"]


def test_disk_full_on_a_small_tmpfs(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A real full disk: the save that does not fit fails cleanly, the previous checkpoint still
    loads, and the space of the cut write is given back."""
    target = tmp_path / "small"
    target.mkdir()
    model = torch.nn.Linear(256, 256)  # a checkpoint of about 270 kB
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(target)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with ExperimentLogger(tmp_path / "run", console_output=False) as lg:
            manager = CheckpointManager(target, logger=lg, keep_last=1)
            assert manager.save(0, model=model) is not None
            with torch.no_grad():
                model.weight.fill_(1.0)
            assert manager.save(1, model=model) is None  # old + new do not fit in 400 kB
            assert files(target) == [MANIFEST, "step_00000000.pt"]
            loaded = manager.load_latest()
            assert loaded is not None
            assert loaded["step"] == 0
            assert not torch.equal(loaded["model"]["weight"], model.weight)
            assert "No space left on device" in capfd.readouterr().err
            assert [e["step"] for e in events(lg, "failed")] == [1]
            manager.close()
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_closed_manager_refuses_calls(logger: ExperimentLogger) -> None:
    """After close(), every call raises; closing twice is harmless."""
    manager = CheckpointManager(logger=logger)
    manager.close()
    manager.close()
    with pytest.raises(RuntimeError, match="is closed"):
        manager.save(0, model=Net())
