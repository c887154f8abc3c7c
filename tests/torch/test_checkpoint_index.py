"""The checkpoint index: retention policy, ranking, manifest text, directory scan and rebuild."""

from __future__ import annotations

import json
from pathlib import Path

from expmate.torch._checkpoint_index import (
    Entry,
    best_entry,
    kept,
    manifest_bytes,
    rebuild,
    scan,
)


def entry(step: int, value: float | None, name: str | None = None) -> Entry:
    return Entry(step, name or f"step_{step:08d}.pt", "file", 10, 1.0, 0.1, value)


def test_keep_last_and_best_form_one_set() -> None:
    """The newest keep_last, the best keep_best (ties: the earlier step), and the newest."""
    entries = [entry(s, v) for s, v in enumerate([3.0, 1.0, 1.0, 5.0, 4.0, 6.0])]
    assert sorted(kept(entries, keep_last=2, keep_best=2, mode="min")) == [
        "step_00000001.pt",
        "step_00000002.pt",
        "step_00000004.pt",
        "step_00000005.pt",
    ]
    assert sorted(kept(entries, keep_last=1, keep_best=1, mode="max")) == ["step_00000005.pt"]
    assert sorted(kept(entries, keep_last=0, keep_best=1, mode="min")) == [
        "step_00000001.pt",
        "step_00000005.pt",  # the newest is never dropped
    ]
    assert len(kept(entries, keep_last=None, keep_best=0, mode=None)) == 6
    assert kept([], keep_last=2, keep_best=1, mode="min") == set()


def test_unvalued_checkpoints_are_never_best() -> None:
    """A checkpoint without a value is kept only as one of the last ones."""
    entries = [entry(0, None), entry(1, 2.0), entry(2, None)]
    assert best_entry(entries, "min") == entries[1]
    assert best_entry(entries, None) is None
    assert best_entry([entry(0, None)], "max") is None


def test_manifest_is_strict_json_with_latest_and_best() -> None:
    """The manifest names the policy, latest and best step, one record per checkpoint."""
    text = manifest_bytes(
        [entry(2, 1.5), entry(1, None)],
        monitor="val/loss",
        mode="min",
        keep={"keep_last": 2, "keep_best": 1},
    )
    data = json.loads(text)
    assert {k: v for k, v in data.items() if k != "checkpoints"} == {
        "format": 1,
        "monitor": "val/loss",
        "mode": "min",
        "keep_last": 2,
        "keep_best": 1,
        "latest_step": 2,
        "best_step": 2,
    }
    assert data["checkpoints"] == [
        {"step": 1, "file": "step_00000001.pt", "kind": "file", "size": 10, "time": 1.0,
         "seconds": 0.1, "value": None},
        {"step": 2, "file": "step_00000002.pt", "kind": "file", "size": 10, "time": 1.0,
         "seconds": 0.1, "value": 1.5},
    ]  # fmt: skip


def test_scan_tells_complete_from_cut(tmp_path: Path) -> None:
    """Complete: a step file, a sharded directory with state.pt and .metadata. Cut: temporary
    files, a directory without .metadata. Anything else is not a checkpoint."""
    (tmp_path / "step_00000001.pt").write_bytes(b"x")
    for name, files in {"step_00000002": ["state.pt", ".metadata"], "step_00000003": ["state.pt"],
                        "step_00000002_r1": ["state.pt", ".metadata"]}.items():  # fmt: skip
        (tmp_path / name).mkdir()
        for file in files:
            (tmp_path / name / file).write_bytes(b"x")
    (tmp_path / ".step_00000004.pt.q1.tmp").write_bytes(b"x")
    (tmp_path / "step_00000005.pt.corrupt").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    found = scan(tmp_path)
    assert found.complete == {
        "step_00000001.pt": (1, "file", 0),
        "step_00000002": (2, "sharded", 0),
        "step_00000002_r1": (2, "sharded", 1),
    }
    assert found.cut == [".step_00000004.pt.q1.tmp", "step_00000003"]


def test_rebuild_prefers_the_manifest_and_recovers_the_rest(tmp_path: Path) -> None:
    """Listed files keep their records, a listed file that is gone is dropped, an unlisted one is
    read back; of two revisions of a step the listed one wins and the other is stale."""
    for name in ("step_00000001.pt", "step_00000003.pt"):
        (tmp_path / name).write_bytes(b"12345")
    for name in ("step_00000002", "step_00000002_r1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.pt").write_bytes(b"x")
        (tmp_path / name / ".metadata").write_bytes(b"y")
    manifest = {
        "monitor": "val/loss",
        "checkpoints": [
            entry(1, 0.5).as_json(),
            {**entry(2, 0.25, "step_00000002").as_json(), "kind": "sharded"},
            entry(9, 0.1).as_json(),
        ],
    }
    read = []

    def recover(path: Path, kind: str) -> tuple[float | None, str | None]:
        read.append((path.name, kind))
        return 0.75, "val/loss"

    entries, stale, notes = rebuild(tmp_path, manifest, "val/loss", recover)
    assert [(e.step, e.file, e.value, e.size) for e in entries] == [
        (1, "step_00000001.pt", 0.5, 10),
        (2, "step_00000002", 0.25, 10),
        (3, "step_00000003.pt", 0.75, 5),
    ]
    assert sorted(read) == [("step_00000002_r1", "sharded"), ("step_00000003.pt", "file")]
    assert (stale, notes) == (["step_00000002_r1"], [])
