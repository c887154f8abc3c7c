"""Which checkpoints a directory holds and which of them to keep.

The manifest ``checkpoints.json`` lists the complete checkpoints; the directory itself is the
truth it is checked against. A plain checkpoint ``step_00000010.pt`` is complete as soon as its
name exists (it is renamed into place whole); a sharded one, the directory ``step_00000010/`` (or
``step_00000010_r1/`` when a step is saved again), is complete when it holds ``state.pt`` and
torch.distributed.checkpoint's ``.metadata``, which is written last. Everything else that looks
like a checkpoint is a write that was cut (a hidden temporary file, a directory without
``.metadata``) and is removed by the next save. No torch here.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from expmate.durable import is_temp_file, replace_bytes_durably

MANIFEST = "checkpoints.json"
FORMAT = 1
STATE_FILE = "state.pt"
COMMIT_MARKER = ".metadata"
CORRUPT_SUFFIX = ".corrupt"
KIND_FILE = "file"
KIND_SHARDED = "sharded"

_PLAIN = re.compile(r"step_(\d+)\.pt")
_SHARDED = re.compile(r"step_(\d+)(?:_r(\d+))?")


@dataclass(frozen=True)
class Entry:
    """One complete checkpoint, as the manifest records it.

    Attributes:
        step: the step given to ``save``.
        file: its name inside the checkpoint directory (a file, or a directory when sharded).
        kind: ``"file"`` or ``"sharded"``.
        size: bytes on disk (all files of a sharded checkpoint).
        time: Unix time at which it became complete.
        seconds: how long the write took (None when recovered from the directory).
        value: the monitored metric's global value at ``step``; None when not monitored, not
            logged at that step, or not finite (such a checkpoint is never "best").
    """

    step: int
    file: str
    kind: str
    size: int
    time: float
    seconds: float | None
    value: float | None

    def as_json(self) -> dict[str, Any]:
        """The manifest's record of this checkpoint."""
        return asdict(self)


def plain_name(step: int) -> str:
    """File name of the plain checkpoint of ``step``."""
    return f"step_{step:08d}.pt"


def sharded_name(step: int, revision: int) -> str:
    """Directory name of a sharded checkpoint of ``step`` (revision > 0 when saved again)."""
    return f"step_{step:08d}" if revision == 0 else f"step_{step:08d}_r{revision}"


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or None when it is None or not finite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _sharded_complete(path: Path) -> bool:
    return (path / COMMIT_MARKER).is_file() and (path / STATE_FILE).is_file()


def dir_size(path: Path) -> int:
    """Bytes of every file directly inside ``path``."""
    return sum(child.stat().st_size for child in path.iterdir() if child.is_file())


@dataclass
class Scan:
    """What a checkpoint directory holds.

    Attributes:
        complete: name -> (step, kind, revision) of every complete checkpoint.
        cut: names of writes that were cut (temporary files, sharded directories without
            ``.metadata``); safe to remove when no save is in flight.
    """

    complete: dict[str, tuple[int, str, int]]
    cut: list[str]


def scan(directory: Path) -> Scan:
    """List the checkpoints of ``directory`` (which must exist)."""
    complete: dict[str, tuple[int, str, int]] = {}
    cut: list[str] = []
    for child in sorted(directory.iterdir()):
        name = child.name
        if is_temp_file(name) and name.startswith((".step_", f".{MANIFEST}.")):
            cut.append(name)
        elif (match := _PLAIN.fullmatch(name)) and child.is_file():
            complete[name] = (int(match[1]), KIND_FILE, 0)
        elif (match := _SHARDED.fullmatch(name)) and child.is_dir():
            if _sharded_complete(child):
                complete[name] = (int(match[1]), KIND_SHARDED, int(match[2] or 0))
            else:
                cut.append(name)
    return Scan(complete, cut)


def read_manifest(directory: Path) -> tuple[dict[str, Any], str | None]:
    """The manifest's content (empty when missing), and a problem to report (unreadable file)."""
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:
        return {}, f"{path} could not be read ({type(exc).__name__}: {exc}); rebuilt from files"
    if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), list):
        return {}, f"{path} is not a checkpoint manifest; rebuilt from the files present"
    return data, None


def _entry_of(record: Any) -> Entry | None:
    try:
        return Entry(
            step=int(record["step"]),
            file=str(record["file"]),
            kind=str(record["kind"]),
            size=int(record["size"]),
            time=float(record["time"]),
            seconds=None if record.get("seconds") is None else float(record["seconds"]),
            value=finite_or_none(record.get("value")),
        )
    except (KeyError, TypeError, ValueError):
        return None


Recover = Callable[[Path, str], tuple[float | None, str | None]]
"""``recover(path, kind) -> (value, monitor name)`` read from a checkpoint missing from the
manifest (``(None, None)`` when it cannot be read)."""


def rebuild(
    directory: Path, manifest: dict[str, Any], monitor: str | None, recover: Recover
) -> tuple[list[Entry], list[str], list[str]]:
    """The complete checkpoints, from the manifest checked against the files present.

    A manifest record whose file is gone is dropped; a complete checkpoint the manifest does not
    list (the process was killed between the rename and the manifest's update) is added, its
    monitored value read back from it. Values recorded for another monitor are dropped. When a
    step has several sharded revisions, the manifest's (else the newest) is kept.

    Returns:
        ``(entries sorted by step, names to remove at the next save, notes to report)``.
    """
    found = scan(directory)
    notes: list[str] = []
    same_monitor = manifest.get("monitor") == monitor
    if manifest.get("checkpoints") and not same_monitor:
        notes.append(
            f"{directory / MANIFEST} ranked checkpoints by {manifest.get('monitor')!r}, not "
            f"{monitor!r}: their values are not used to choose the best"
        )
    listed: dict[str, Entry] = {}
    for record in manifest.get("checkpoints", []):
        entry = _entry_of(record)
        if entry is not None and entry.file in found.complete:
            listed[entry.file] = entry if same_monitor else replace(entry, value=None)
    candidates: dict[int, list[tuple[bool, int, Entry]]] = {}
    for name, (step, kind, revision) in found.complete.items():
        entry = listed.get(name)
        if entry is None:
            entry = _recovered(directory, name, step, kind, monitor, recover)
        candidates.setdefault(step, []).append((name in listed, revision, entry))
    entries: list[Entry] = []
    stale: list[str] = list(found.cut)
    for step in sorted(candidates):
        ranked = sorted(candidates[step], key=lambda c: (c[0], c[1]), reverse=True)
        entries.append(ranked[0][2])
        stale.extend(c[2].file for c in ranked[1:])
    return entries, stale, notes


def _recovered(
    directory: Path, name: str, step: int, kind: str, monitor: str | None, recover: Recover
) -> Entry:
    path = directory / name
    value, recorded_monitor = recover(path, kind)
    info = path.stat()
    size = info.st_size if kind == KIND_FILE else dir_size(path)
    value = value if recorded_monitor == monitor else None
    return Entry(step, name, kind, size, info.st_mtime, None, finite_or_none(value))


def manifest_bytes(
    entries: Iterable[Entry], *, monitor: str | None, mode: str | None, keep: dict[str, Any]
) -> bytes:
    """The text of ``checkpoints.json`` (strict JSON: a non-finite value is written as null)."""
    listed = sorted(entries, key=lambda e: e.step)
    best = best_entry(listed, mode)
    data = {
        "format": FORMAT,
        "monitor": monitor,
        "mode": mode,
        **keep,
        "latest_step": listed[-1].step if listed else None,
        "best_step": best.step if best is not None else None,
        "checkpoints": [e.as_json() for e in listed],
    }
    return (json.dumps(data, indent=2, allow_nan=False) + "\n").encode("utf-8")


def write_manifest(directory: Path, text: bytes) -> None:
    """Replace ``checkpoints.json`` durably (raises OSError)."""
    replace_bytes_durably(directory / MANIFEST, text)


def ranked(entries: Iterable[Entry], mode: str | None) -> list[Entry]:
    """Checkpoints with a value, best first; among equal values the earlier step first (as
    best.json, where a later equal value does not replace the best)."""
    if mode is None:
        return []
    sign = 1.0 if mode == "min" else -1.0
    valued = [e for e in entries if e.value is not None]
    return sorted(valued, key=lambda e: (sign * e.value, e.step))  # type: ignore[operator]


def best_entry(entries: Iterable[Entry], mode: str | None) -> Entry | None:
    """The best checkpoint by its monitored value, or None."""
    order = ranked(entries, mode)
    return order[0] if order else None


def kept(
    entries: list[Entry], *, keep_last: int | None, keep_best: int, mode: str | None
) -> set[str]:
    """Names the retention policy keeps: the newest ``keep_last`` (all when None), the best
    ``keep_best`` by value, and always the newest of all."""
    by_step = sorted(entries, key=lambda e: e.step)
    if not by_step:
        return set()
    keep = {by_step[-1].file}
    if keep_last is None:
        keep.update(e.file for e in by_step)
    elif keep_last > 0:
        keep.update(e.file for e in by_step[-keep_last:])
    keep.update(e.file for e in ranked(by_step, mode)[:keep_best])
    return keep


def remove_path(path: Path) -> None:
    """Remove a checkpoint file or directory (raises OSError)."""
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path)
    else:
        os.unlink(path)
