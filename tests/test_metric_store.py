"""expmate.metric_store: one rank's metric rows and best values, held until taken."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from expmate.metric_store import MAX_COPIES, MetricStore
from expmate.sinks import AppendFile
from tests.fake_cuda import FakeCuda

HEADER = "step,split,name,value,wall_time\n"


def written(store: MetricStore) -> tuple[str, str | None]:
    """Write what take() hands over, as the logger does; return (the text appended to the
    metrics file, the new best.json text or None if it did not change)."""
    path = store.rows_path()
    size = path.stat().st_size if path.exists() else 0
    best = store.best.path
    before = best.read_text() if best is not None and best.exists() else None
    batches, bests, _ = store.take()
    store.write(batches, bests)
    text = path.read_bytes()[size:].decode() if path.exists() else ""
    after = best.read_text() if best is not None and best.exists() else None
    return text, (after if after != before else None)


def test_record_buffers_a_row_and_counts_waiting_rows(tmp_path: Path) -> None:
    """A host value becomes one exact CSV row (after the header) and one waiting row."""
    store = MetricStore(tmp_path / "metrics.csv", tmp_path / "best.json")
    assert store.record(3, "val", "loss", 0.25, True, None, 12.0) == 1
    assert store.record(3, "val", "accuracy", 0.5, True, None, 12.0) == 2
    text, _ = written(store)
    assert text == HEADER + "3,val,loss,0.25,12.000\n3,val,accuracy,0.5,12.000\n"
    assert store.waiting == 0


def test_take_hands_over_the_bests_of_the_same_rows(tmp_path: Path) -> None:
    """The best.json text taken with the rows names only steps among those rows."""
    store = MetricStore(tmp_path / "metrics.csv", tmp_path / "best.json")
    store.record(0, "val", "loss", 0.5, True, None, 1.0)
    store.record(1, "val", "loss", 0.4, True, None, 1.0)
    _, bests = written(store)
    assert bests is not None
    assert json.loads(bests) == {"val_loss": {"value": 0.4, "step": 1, "mode": "min"}}
    assert written(store) == ("", None)  # nothing new: no rows, no best.json rewrite


def test_write_false_tracks_best_without_a_row(tmp_path: Path) -> None:
    """A reduced value on a rank other than 0 updates the best and writes no row."""
    store = MetricStore(tmp_path / "metrics_rank1.csv", None)
    store.record(2, "val", "accuracy", 0.9, True, None, 1.0, write=False)
    assert store.get_best("val", "accuracy") == {"value": 0.9, "step": 2, "mode": "max"}
    assert written(store) == ("", None)
    assert not (tmp_path / "metrics_rank1.csv").exists()


def test_untracked_name_has_no_best(tmp_path: Path) -> None:
    """A name that says neither min nor max, with no mode, is written but never tracked."""
    store = MetricStore(tmp_path / "metrics.csv", tmp_path / "best.json")
    store.record(0, "train", "lr", 0.1, True, None, 1.0)
    assert store.get_best("train", "lr") is None
    store.record(0, "train", "lr", 0.1, True, "min", 1.0)
    assert store.get_best("train", "lr") == {"value": 0.1, "step": 0, "mode": "min"}


@pytest.mark.parametrize(
    ("split", "name", "error"),
    [("", "loss", ValueError), ("val", 3, TypeError), (["val"], "loss", TypeError)],
)
def test_key_rejects_bad_split_or_name(
    tmp_path: Path, split: object, name: object, error: type
) -> None:
    """Split and name must be non-empty strings; the error names the bad one."""
    store = MetricStore(tmp_path / "metrics.csv", None)
    with pytest.raises(error):
        store.key(split, name)


def test_deferred_tensor_is_copied_and_read_at_materialize(tmp_path: Path) -> None:
    """A deferred tensor is snapshotted when logged and becomes a row at materialize()."""
    store = MetricStore(tmp_path / "metrics.csv", tmp_path / "best.json")
    value = torch.tensor(0.5)
    assert store.defer(0, "val", "loss", value, True, None, 7.0) == 1
    value += 1  # a change after logging does not count
    assert store.get_best("val", "loss") == {"value": 0.5, "step": 0, "mode": "min"}
    text, _ = written(store)
    assert text == HEADER + "0,val,loss,0.5,7.000\n"


def device_store(tmp_path: Path) -> tuple[MetricStore, FakeCuda]:
    """A store whose tensors take the CUDA path, through the double of the CUDA calls."""
    calls = FakeCuda()
    return MetricStore(tmp_path / "metrics.csv", tmp_path / "best.json", calls=calls), calls


def test_device_rows_wait_for_their_copy_and_keep_the_logged_order(tmp_path: Path) -> None:
    """A flush that does not wait starts the copy and writes nothing of it; once the copy has
    completed, a later one writes the device rows and the host row logged after them in the
    order logged, best.json naming only rows written; nothing ever waited."""
    store, calls = device_store(tmp_path)
    value = torch.tensor(0.5)
    store.defer(0, "val", "loss", value, True, None, 1.0)
    value -= 0.25  # a change after logging does not count
    store.defer(1, "val", "loss", value, True, None, 2.0)
    store.record(1, "val", "acc", 0.75, True, None, 3.0)
    store.materialize(wait=False)
    store.materialize(wait=False)  # not completed yet: nothing moves
    assert written(store) == ("", None)
    assert len(calls.events) == 1  # one copy for the two values
    calls.complete()
    store.materialize(wait=False)
    text, bests = written(store)
    assert text == (HEADER + "0,val,loss,0.5,1.000\n1,val,loss,0.25,2.000\n1,val,acc,0.75,3.000\n")
    assert bests is not None and json.loads(bests) == {
        "val_loss": {"value": 0.25, "step": 1, "mode": "min"},
        "val_acc": {"value": 0.75, "step": 1, "mode": "max"},
    }
    assert calls.waits == 0
    store.record(2, "val", "acc", 0.8, True, None, 4.0)  # nothing on its way: a row at once
    assert written(store)[0] == "2,val,acc,0.8,4.000\n"


def test_copies_are_recorded_oldest_first(tmp_path: Path) -> None:
    """A later copy that completes first waits for the earlier one: rows stay in step order."""
    store, calls = device_store(tmp_path)
    store.defer(0, "train", "loss", torch.tensor(1.0), True, None, 1.0)
    store.materialize(wait=False)
    store.defer(1, "train", "loss", torch.tensor(2.0), True, None, 2.0)
    store.materialize(wait=False)
    calls.events[1].done = True
    store.materialize(wait=False)
    assert written(store) == ("", None)
    calls.events[0].done = True
    store.materialize(wait=False)
    assert written(store)[0] == HEADER + "0,train,loss,1.0,1.000\n1,train,loss,2.0,2.000\n"


def test_copies_in_flight_are_bounded(tmp_path: Path) -> None:
    """With MAX_COPIES copies in flight, a flush that starts one more first waits for the
    oldest (and writes its rows); pinned buffers of copies already read are reused."""
    store, calls = device_store(tmp_path)
    for step in range(MAX_COPIES):
        store.defer(step, "train", "loss", torch.tensor(float(step)), True, None, 1.0)
        store.materialize(wait=False)
    assert (calls.waits, written(store)[0]) == (0, "")
    store.defer(MAX_COPIES, "train", "loss", torch.tensor(9.0), True, None, 1.0)
    store.materialize(wait=False)
    assert calls.waits == 1
    assert written(store)[0] == HEADER + "0,train,loss,0.0,1.000\n"
    assert len(calls.pinned_sizes) == MAX_COPIES  # the fifth copy took the first one's buffer
    store.materialize()
    assert written(store)[0] == "".join(
        f"{s},train,loss,{v},1.000\n" for s, v in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 9.0)]
    )


def test_a_failed_copy_loses_only_its_device_values(tmp_path: Path) -> None:
    """A copy that fails on the device raises (for the flush to report); its device values are
    lost, the host values logged with them are written, and later copies work."""
    store, calls = device_store(tmp_path)
    store.defer(0, "train", "loss", torch.tensor(1.0), True, None, 1.0)
    store.record(0, "train", "lr", 0.1, True, None, 1.0)
    store.materialize(wait=False)
    calls.complete()
    calls.fail = RuntimeError("CUDA error: an illegal memory access was encountered")
    with pytest.raises(RuntimeError, match="illegal memory access"):
        store.materialize(wait=False)
    store.defer(1, "train", "loss", torch.tensor(0.5), True, None, 2.0)
    store.materialize()
    assert written(store)[0] == HEADER + "0,train,lr,0.1,1.000\n1,train,loss,0.5,2.000\n"


def test_best_and_last_wait_for_device_values(tmp_path: Path) -> None:
    """get_best and get_last wait for the copies (the double's wait counted); a copy follows
    the stream each value was logged on."""
    store, calls = device_store(tmp_path)
    store.defer(0, "val", "loss", torch.tensor(0.5), True, None, 1.0)
    calls.current = "side"
    store.defer(1, "val", "loss", torch.tensor(0.75), True, None, 2.0)
    assert store.get_best("val", "loss") == {"value": 0.5, "step": 0, "mode": "min"}
    assert store.get_last("val", "loss") == {"value": 0.75, "step": 1}
    assert (calls.used, calls.waits) == (["default", "side"], 2)


def test_after_fork_moves_rows_to_a_file_of_the_child(tmp_path: Path) -> None:
    """After a fork the parent's waiting rows are dropped, new rows go to metrics_pid<pid>.csv
    and best.json is never written."""
    store = MetricStore(tmp_path / "metrics.csv", tmp_path / "best.json")
    store.record(0, "val", "loss", 0.5, True, None, 1.0)
    store.after_fork()
    store.record(1, "val", "loss", 0.25, True, None, 1.0)
    text, bests = written(store)
    assert (text, bests) == (HEADER + "1,val,loss,0.25,1.000\n", None)
    assert (tmp_path / f"metrics_pid{os.getpid()}.csv").read_text() == text
    assert not (tmp_path / "metrics.csv").exists()  # the parent writes its own rows


def test_last_value_per_metric(tmp_path: Path) -> None:
    """get_last gives the latest value and its step, whatever the direction of the metric."""
    store = MetricStore(tmp_path / "metrics.csv", None)
    store.record(0, "val", "loss", 0.5, True, None, 1.0)
    store.record(1, "val", "loss", 0.7, True, None, 2.0)
    store.record(1, "train", "lr", 3, True, None, 2.0)
    assert store.get_last("val", "loss") == {"value": 0.7, "step": 1}
    assert store.get_last("train", "lr") == {"value": 3, "step": 1}
    assert store.get_last("val", "accuracy") is None


def test_take_tracked_hands_over_last_and_best_of_the_same_rows(tmp_path: Path) -> None:
    """take(tracked=True) gives (split, name, [last, step], best) of every metric, untracked
    ones with no best, consistent with the rows taken."""
    store = MetricStore(tmp_path / "metrics.csv", tmp_path / "best.json")
    store.record(0, "val", "loss", 0.5, True, None, 1.0)
    store.record(1, "val", "loss", 0.75, True, None, 1.0)
    store.record(1, "train", "lr", 0.1, True, None, 1.0)
    _, _, entries = store.take(tracked=True)
    assert entries == [
        ("val", "loss", [0.75, 1], {"value": 0.5, "step": 0, "mode": "min"}),
        ("train", "lr", [0.1, 1], None),
    ]
    assert store.take()[2] is None


def test_best_whose_row_was_lost_is_not_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush whose rows fail to reach metrics.csv leaves best.json at the previous best while
    the lost best stays the best; a later best whose row is written is saved."""
    store = MetricStore(tmp_path / "metrics.csv", tmp_path / "best.json")
    store.record(0, "val", "loss", 0.5, True, None, 1.0)
    written(store)
    store.record(1, "val", "loss", 0.2, True, None, 1.0)
    store.record(1, "val", "accuracy", 0.9, True, None, 1.0)
    with monkeypatch.context() as patch:
        patch.setattr(AppendFile, "write", lambda self, lines: False)
        written(store)
    best = json.loads((tmp_path / "best.json").read_text())
    assert best == {"val_loss": {"value": 0.5, "step": 0, "mode": "min"}}
    assert store.get_best("val", "loss") == {"value": 0.2, "step": 1, "mode": "min"}
    store.record(2, "val", "loss", 0.3, True, None, 1.0)  # not a best: best.json unchanged
    assert written(store) == ("2,val,loss,0.3,1.000\n", None)
    store.record(3, "val", "loss", 0.1, True, None, 1.0)
    _, text = written(store)
    assert text is not None
    assert json.loads(text) == {"val_loss": {"value": 0.1, "step": 3, "mode": "min"}}
