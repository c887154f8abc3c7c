"""A stand-in for the CUDA calls of expmate.device_copy, so the GPU path runs on CPU tensors.

CPU tensors take the CUDA path: stacked, converted and copied with ``non_blocking=True`` into a
plain host buffer, behind an event that completes only when a test says so (:meth:`FakeCuda.
complete`) or when something waits for it (:meth:`FakeCuda.wait`, counted): a GPU that has not
got there yet, whose progress the test controls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from expmate.device_copy import CUDA, CudaCalls


class FakeEvent:
    """An event recorded on ``stream``; ``done`` once the fake device has reached it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.done = False


class FakeCuda(CudaCalls):
    """CudaCalls for CPU tensors posing as CUDA ones.

    Attributes:
        current: the stream that :meth:`stream_of` reports as current.
        used: the streams made current for copies, in order.
        events: every event recorded, in order.
        waits: how many times something waited for an event that had not completed.
        pinned_sizes: the size of each pinned buffer allocated.
    """

    def __init__(self) -> None:
        self.current: Any = "default"
        self.used: list[Any] = []
        self.events: list[FakeEvent] = []
        self.waits = 0
        self.pinned_sizes: list[int] = []
        self._active: Any = None
        self.fail: BaseException | None = None  # raised by the next copy's wait, once

    def path(self, device: Any) -> str:
        return CUDA

    def stream_of(self, tensor: Any) -> Any:
        return self.current

    @contextlib.contextmanager
    def using(self, stream: Any) -> Iterator[None]:
        self.used.append(stream)
        self._active = stream
        try:
            yield
        finally:
            self._active = None

    def pinned(self, size: int) -> Any:
        self.pinned_sizes.append(size)
        return torch.empty(size, dtype=torch.float64)

    def record_event(self, device: Any) -> FakeEvent:
        event = FakeEvent(self._active)
        self.events.append(event)
        return event

    def done(self, event: Any) -> bool:
        return bool(event.done)

    def wait(self, event: Any) -> None:
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        if not event.done:
            self.waits += 1
            event.done = True

    def complete(self, count: int | None = None) -> None:
        """Let the device reach the first ``count`` events recorded (None: all of them)."""
        for event in self.events[:count]:
            event.done = True
