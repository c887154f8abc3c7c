"""Every rank's side of loading: read a checkpoint and check it, then apply it to the objects.

Reading and applying are kept apart on purpose: a checkpoint that cannot be *read* is skipped
(the previous one is tried), while an error in *applying* it (a model of another shape) is the
caller's and is raised: it would fail the same way on every older checkpoint.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from expmate.torch._checkpoint_index import COMMIT_MARKER, KIND_FILE, STATE_FILE, Entry
from expmate.torch._checkpoint_state import (
    check_payload,
    load_parts,
    load_sharded_full,
    load_sharded_into,
    unwrap,
)

_ERROR_CHARS = 240


class RefusedError(Exception):
    """A checkpoint that ``torch.load(weights_only=True)`` refuses: not corrupt, not skipped."""


def short_error(exc: BaseException) -> str:
    """``Type: first line of the message``, cut to a readable length."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > _ERROR_CHARS:
        text = text[: _ERROR_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def own_device() -> torch.device:
    """This rank's device: the current CUDA device when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def location_of(map_location: Any) -> Any:
    """Where loaded tensors go: ``map_location``, checked to be usable here, or this rank's device.

    Checked before anything is read, so that a device this machine lacks is the caller's error
    and never makes a good checkpoint look corrupt.

    Raises:
        ValueError: a device name that does not parse or is not available.
    """
    if map_location is None:
        return own_device()
    if isinstance(map_location, (str, torch.device)):
        try:
            torch.empty(0, device=torch.device(map_location))
        except (RuntimeError, AssertionError) as exc:
            raise ValueError(f"map_location={map_location!r} is not usable here: {exc}") from exc
    return map_location


def torch_load(path: Path, location: Any, weights_only: bool) -> Any:
    """``torch.load``; a refusal of ``weights_only`` becomes :class:`RefusedError`."""
    try:
        return torch.load(path, map_location=location, weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise RefusedError(
                f"torch.load(weights_only=True) refused {path}: it holds objects other than "
                "tensors and plain containers (an extra of your own classes?); pass "
                "weights_only=False if you trust the file"
            ) from exc
        raise


def check_shards(path: Path) -> None:
    """Raise unless ``.metadata`` reads and every shard file it names exists."""
    from torch.distributed.checkpoint import FileSystemReader

    if not (path / COMMIT_MARKER).is_file():
        raise FileNotFoundError(f"{path / COMMIT_MARKER} is missing")
    metadata = FileSystemReader(str(path)).read_metadata()
    names = {item.relative_path for item in (metadata.storage_data or {}).values()}
    missing = sorted(n for n in names if not (path / n).is_file())
    if missing:
        raise FileNotFoundError(f"shard files missing from {path}: {', '.join(missing)}")


def read(
    directory: Path, entry: Entry, location: Any, weights_only: bool, *, full: bool, group: Any
) -> dict[str, Any]:
    """The checkpoint of ``entry`` as a dict; raises when it cannot be read.

    Args:
        full: for a sharded checkpoint, also read every tensor whole (a collective); otherwise
            only its ``state.pt`` and ``.metadata`` are read and checked.
    """
    path = directory / entry.file
    if entry.kind == KIND_FILE:
        size = os.stat(path).st_size
        if size != entry.size:
            raise ValueError(f"the file has {size} bytes, the manifest recorded {entry.size}")
        return check_payload(torch_load(path, location, weights_only), entry.step)
    data = check_payload(torch_load(path / STATE_FILE, location, weights_only), entry.step)
    check_shards(path)
    if full:
        data.update(load_sharded_full(str(path), group))
    return data


def apply(
    directory: Path, entry: Entry, data: dict[str, Any], target: dict[str, Any], group: Any
) -> None:
    """Load a checkpoint read by :func:`read` into the model, optimizer, scheduler, scaler."""
    model = target["model"]
    if entry.kind == KIND_FILE:
        unwrap(model).load_state_dict(data["model"], strict=target["strict"])
        load_parts(data, {k: target.get(k) for k in ("optimizer", "scheduler", "scaler")})
    else:
        load_sharded_into(model, target.get("optimizer"), str(directory / entry.file), group)
        load_parts(data, {k: target.get(k) for k in ("scheduler", "scaler")})


def recover(path: Path, kind: str) -> tuple[float | None, str | None]:
    """The monitored value and monitor name recorded inside a checkpoint (tensors not read)."""
    target = path if kind == KIND_FILE else path / STATE_FILE
    try:
        data = torch.load(target, map_location="cpu", mmap=True, weights_only=True)
        monitor = data.get("monitor") or {}
        return monitor.get("value"), monitor.get("name")
    except Exception:  # noqa: BLE001 - unreadable: no value (loading skips it if corrupt)
        return None, None
