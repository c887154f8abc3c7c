"""Tensor values of one sync point on their way to the host, without a blocking host sync.

At the sync point (on the training thread) the CUDA values are stacked once per device, converted
to float64 on the device and copied into pinned host memory with ``non_blocking=True``, and a CUDA
event is recorded behind the copy. The reducer's own thread later polls the event and reads the
pinned memory once the event has completed: the training thread never waits for the GPU, and no
synchronizing CUDA call is made (``event.query()`` is not one). CPU tensors are read directly; a
tensor on another kind of device is copied with a plain (blocking) ``.cpu()``, on the reducer's
thread, not the training thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

HOST = "host"
CUDA = "cuda"
BLOCKING = "blocking"

_POLL_START = 50e-6
_POLL_MAX = 2e-3


def copy_path(device: torch.device) -> str:
    """How values on ``device`` reach the host: :data:`HOST` (already there, CPU), :data:`CUDA`
    (pinned memory and an event) or :data:`BLOCKING` (a plain copy, any other device)."""
    if device.type == "cpu":
        return HOST
    return CUDA if device.type == "cuda" else BLOCKING


class PinnedBuffers:
    """One reusable pinned float64 buffer per CUDA device, grown when a sync point needs more.

    Reuse is safe because a reducer has one sync in flight at most: the next copy into a buffer
    is started only after the previous one has been read.
    """

    def __init__(self) -> None:
        self._buffers: dict[torch.device, torch.Tensor] = {}

    def get(self, device: torch.device, size: int) -> torch.Tensor:
        """A pinned buffer of at least ``size`` float64 values for copies from ``device``."""
        buffer = self._buffers.get(device)
        if buffer is None or buffer.numel() < size:
            capacity = max(size, 2 * buffer.numel() if buffer is not None else 64)
            buffer = torch.empty(capacity, dtype=torch.float64, pin_memory=True)
            self._buffers[device] = buffer
        return buffer


def _as_float64(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """One flat float64 tensor of one-element tensors on one device, and which tensor each of
    its values comes from. Concatenated once per dtype: a cast per value would launch a kernel
    per value, and one cat of mixed dtypes could round large integers through float32."""
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, tensor in enumerate(tensors):
        by_dtype.setdefault(tensor.dtype, []).append(i)
    parts, order = [], []
    for indices in by_dtype.values():
        parts.append(torch.cat([tensors[i].reshape(1) for i in indices]).to(torch.float64))
        order.extend(indices)
    return (parts[0] if len(parts) == 1 else torch.cat(parts)), order


class HostCopy:
    """The host values of ``tensors`` (one element each), started now, read by :meth:`result`.

    Args:
        tensors: snapshots taken when the values were logged (nothing else writes them).
        pinned: where CUDA values land (None: a pool of its own).
    """

    def __init__(
        self, tensors: Sequence[torch.Tensor], pinned: PinnedBuffers | None = None
    ) -> None:
        self.size = len(tensors)
        self._groups: list[tuple[str, list[int], Any]] = []
        by_device: dict[torch.device, list[int]] = {}
        for i, tensor in enumerate(tensors):
            by_device.setdefault(tensor.device, []).append(i)
        for device, indices in by_device.items():
            group = [tensors[i] for i in indices]
            path = copy_path(device)
            if path == CUDA:
                flat, order = _as_float64(group)
                buffer = (pinned or PinnedBuffers()).get(device, len(group))
                buffer[: len(group)].copy_(flat, non_blocking=True)
                event = torch.cuda.Event()
                event.record(torch.cuda.current_stream(device))
                self._groups.append((CUDA, [indices[i] for i in order], (buffer, event)))
            else:
                self._groups.append((path, indices, group))

    @property
    def paths(self) -> list[str]:
        """The copy path of each device group, in order of first appearance (for tests)."""
        return [path for path, _, _ in self._groups]

    def result(self) -> list[float]:
        """The values as floats, in the order given; waits (polling, off the training thread)
        for CUDA copies to complete."""
        out = [0.0] * self.size
        for path, indices, held in self._groups:
            if path == CUDA:
                buffer, event = held
                _wait(event)
                values = buffer[: len(indices)].tolist()
            else:
                flat, order = _as_float64(held)
                values = flat.cpu().tolist()
                indices = [indices[i] for i in order]
            for i, value in zip(indices, values, strict=True):
                out[i] = value
        return out


def _wait(event: Any) -> None:
    """Poll ``event`` until it has completed (a query is not a synchronizing call)."""
    pause = _POLL_START
    while not event.query():
        time.sleep(pause)
        pause = min(pause * 2, _POLL_MAX)
