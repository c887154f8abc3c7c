"""Tensor metric values on their way to the host, without a blocking host sync.

A batch of values (a reducer's sync point under torchrun; the device values a rank's metric store
holds at a flush) is copied in one go: the CUDA values are stacked once per device and stream,
converted to float64 on the device and copied into pinned host memory with ``non_blocking=True``,
and a CUDA event is recorded behind the copy. :meth:`HostCopy.ready` asks the events whether the
copies have completed (``event.query()``, not a synchronizing call); :meth:`HostCopy.result`
reads the pinned memory once they have, polling until then. So the thread that starts a copy
never waits for the GPU, and no synchronizing CUDA call is made. CPU tensors are read directly; a
tensor on another kind of device is copied with a plain (blocking) ``.cpu()`` when the result is
read.

Nothing here imports torch: a copy exists only once a tensor does, so torch is already in
``sys.modules`` (``import expmate`` stays free of torch). Every CUDA call goes through
:class:`CudaCalls`, which a test replaces with a double to run the CUDA path without a GPU.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from typing import Any

HOST = "host"
CUDA = "cuda"
BLOCKING = "blocking"

_POLL_START = 50e-6
_POLL_MAX = 2e-3


def _torch() -> Any:
    return sys.modules["torch"]


def copy_path(device: Any) -> str:
    """How values on ``device`` reach the host: :data:`HOST` (already there, CPU), :data:`CUDA`
    (pinned memory and an event) or :data:`BLOCKING` (a plain copy, any other device)."""
    if device.type == "cpu":
        return HOST
    return CUDA if device.type == "cuda" else BLOCKING


class CudaCalls:
    """The device calls a copy makes, in one place (tests put a double in their place)."""

    def path(self, device: Any) -> str:
        """:func:`copy_path` of ``device``."""
        return copy_path(device)

    def stream_of(self, tensor: Any) -> Any:
        """The stream current for ``tensor``'s device now (CUDA tensors; else None): the stream
        its value was made on, which a copy started later must follow."""
        if self.path(tensor.device) != CUDA:
            return None
        return _torch().cuda.current_stream(tensor.device)

    def using(self, stream: Any) -> contextlib.AbstractContextManager[Any]:
        """Make ``stream`` current (None: leave the current stream as it is)."""
        if stream is None:
            return contextlib.nullcontext()
        return _torch().cuda.stream(stream)  # type: ignore[no-any-return]

    def pinned(self, size: int) -> Any:
        """A new pinned float64 host buffer of ``size`` values."""
        torch = _torch()
        return torch.empty(size, dtype=torch.float64, pin_memory=True)

    def record_event(self, device: Any) -> Any:
        """An event recorded on the current stream of ``device``, behind the work queued so far."""
        cuda = _torch().cuda
        event = cuda.Event()
        event.record(cuda.current_stream(device))
        return event

    def done(self, event: Any) -> bool:
        """Whether the work before ``event`` has completed (a query, never a sync)."""
        return bool(event.query())

    def wait(self, event: Any) -> None:
        """Poll ``event`` until it has completed (a query is not a synchronizing call)."""
        pause = _POLL_START
        while not self.done(event):
            time.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)


CUDA_CALLS = CudaCalls()


class PinnedBuffers:
    """Reusable pinned float64 buffers, one per device and stream, grown when a copy needs more.

    Reuse is safe only when the next copy into a buffer starts after the previous one has been
    read: a reducer has one sync in flight at most; a metric store gives each copy in flight a
    set of its own.
    """

    def __init__(self, calls: CudaCalls = CUDA_CALLS) -> None:
        self._calls = calls
        self._buffers: dict[Any, Any] = {}

    def get(self, key: Any, size: int) -> Any:
        """A pinned buffer of at least ``size`` float64 values for copies of ``key`` (a device
        and a stream)."""
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < size:
            capacity = max(size, 2 * buffer.numel() if buffer is not None else 64)
            buffer = self._calls.pinned(capacity)
            self._buffers[key] = buffer
        return buffer


def _as_float64(tensors: Sequence[Any]) -> tuple[Any, list[int]]:
    """One flat float64 tensor of one-element tensors on one device, and which tensor each of
    its values comes from. Concatenated once per dtype: a cast per value would launch a kernel
    per value, and one cat of mixed dtypes could round large integers through float32."""
    torch = _torch()
    by_dtype: dict[Any, list[int]] = {}
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
        tensors: snapshots taken when the values were logged (nothing else writes them); held
            until the result is read.
        pinned: where CUDA values land (None: buffers of its own).
        streams: for each tensor, the stream it was made on (None: every value was made on the
            stream current now); the copy of each stream's values runs on that stream.
        calls: the device calls (a test double in tests).
    """

    def __init__(
        self,
        tensors: Sequence[Any],
        pinned: PinnedBuffers | None = None,
        *,
        streams: Sequence[Any] | None = None,
        calls: CudaCalls = CUDA_CALLS,
    ) -> None:
        self.size = len(tensors)
        self._calls = calls
        self._ready = False
        self._groups: list[tuple[str, list[int], Any]] = []
        by_key: dict[tuple[Any, Any], list[int]] = {}
        for i, tensor in enumerate(tensors):
            by_key.setdefault((tensor.device, None if streams is None else streams[i]), []).append(
                i
            )
        buffers = pinned if pinned is not None else PinnedBuffers(calls)
        for key, indices in by_key.items():
            device, stream = key
            group = [tensors[i] for i in indices]
            path = calls.path(device)
            if path == CUDA:
                with calls.using(stream):
                    flat, order = _as_float64(group)
                    buffer = buffers.get(key, len(group))
                    buffer[: len(group)].copy_(flat, non_blocking=True)
                    event = calls.record_event(device)
                self._groups.append((CUDA, [indices[i] for i in order], (buffer, event, group)))
            else:
                self._groups.append((path, indices, group))

    @property
    def paths(self) -> list[str]:
        """The copy path of each device and stream group, in order of first appearance."""
        return [path for path, _, _ in self._groups]

    def ready(self) -> bool:
        """Whether :meth:`result` can be read without waiting for a device (asks the events)."""
        if not self._ready:
            self._ready = all(
                self._calls.done(held[1]) for path, _, held in self._groups if path == CUDA
            )
        return self._ready

    def result(self) -> list[float]:
        """The values as floats, in the order given; waits (polling) for CUDA copies that have
        not completed yet."""
        out = [0.0] * self.size
        for path, indices, held in self._groups:
            if path == CUDA:
                buffer, event, _ = held
                self._calls.wait(event)
                values = buffer[: len(indices)].tolist()
            else:
                flat, order = _as_float64(held)
                values = flat.cpu().tolist()
                indices = [indices[i] for i in order]
            for i, value in zip(indices, values, strict=True):
                out[i] = value
        return out
