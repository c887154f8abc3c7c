"""expmate.device_copy: tensor values reach the host through pinned memory and events."""

from __future__ import annotations

import pytest
import torch

from expmate import device_copy
from tests.fake_cuda import FakeCuda


def test_copy_paths() -> None:
    """CPU values are read as they are, CUDA ones through pinned memory and an event, any
    other device with a plain copy when the result is read."""
    assert device_copy.copy_path(torch.device("cpu")) == device_copy.HOST
    assert device_copy.copy_path(torch.device("cuda", 1)) == device_copy.CUDA
    assert device_copy.copy_path(torch.device("meta")) == device_copy.BLOCKING
    copy = device_copy.HostCopy(
        [
            torch.tensor(2**40 + 1),
            torch.tensor(0.5, dtype=torch.float32),
            torch.tensor([True]),
            torch.tensor(1.5, dtype=torch.bfloat16),
        ]
    )
    assert copy.paths == [device_copy.HOST]
    assert copy.ready() is True
    assert copy.result() == [float(2**40 + 1), 0.5, 1.0, 1.5]


def test_cuda_path_is_ready_only_once_its_events_complete() -> None:
    """The CUDA path (a double of the CUDA calls): one stacked copy per stream, run on that
    stream behind an event each; ready() asks the events, never waits; the result keeps the
    order given and every value exact (an int64 beyond float32 included)."""
    calls = FakeCuda()
    values = [
        torch.tensor(0.25),
        torch.tensor(2**40 + 1),
        torch.tensor(7, dtype=torch.int32),
        torch.tensor([0.5], dtype=torch.float64),
    ]
    copy = device_copy.HostCopy(values, streams=["s1", "s2", "s1", "s2"], calls=calls)
    assert copy.paths == [device_copy.CUDA, device_copy.CUDA]
    assert calls.used == ["s1", "s2"]
    assert [event.stream for event in calls.events] == ["s1", "s2"]
    assert calls.pinned_sizes == [64, 64]  # one buffer per stream: no copy overwrites another
    assert copy.ready() is False
    calls.complete(1)
    assert copy.ready() is False
    calls.complete()
    assert copy.ready() is True
    assert copy.result() == [0.25, float(2**40 + 1), 7.0, 0.5]
    assert calls.waits == 0


def test_result_waits_for_a_copy_in_flight() -> None:
    """result() before the events complete waits for them (here: the double's wait)."""
    calls = FakeCuda()
    copy = device_copy.HostCopy([torch.tensor(3.0), torch.tensor(4.0)], calls=calls)
    assert copy.result() == [3.0, 4.0]
    assert calls.waits == 1


def test_pinned_buffers_grow_and_are_reused() -> None:
    """A buffer per key, reused while large enough, doubled when a copy needs more."""
    calls = FakeCuda()
    buffers = device_copy.PinnedBuffers(calls)
    first = buffers.get("k", 10)
    assert buffers.get("k", 64) is first
    assert buffers.get("k", 100).numel() == 128
    assert buffers.get("other", 1).numel() == 64
    assert calls.pinned_sizes == [64, 128, 64]


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_cuda_values_reach_the_host_without_a_sync() -> None:
    """Starting a copy of CUDA values (on the current stream, and on a stream of their own)
    makes no synchronizing call; the values come back exact."""
    values = [torch.tensor(0.25, device="cuda") * 3, torch.tensor([7], device="cuda")]
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        late = torch.tensor(2.5, device="cuda") * 2
    pinned = device_copy.PinnedBuffers()
    torch.cuda.set_sync_debug_mode("error")
    try:
        copy = device_copy.HostCopy(values, pinned)
        streams = [device_copy.CUDA_CALLS.stream_of(values[0]), side]
        other = device_copy.HostCopy([values[0], late], streams=streams)
        copy.ready()  # asking is no sync either (whatever the answer)
        other.ready()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert copy.paths == [device_copy.CUDA]
    assert copy.result() == [0.75, 7.0]
    assert other.paths == [device_copy.CUDA, device_copy.CUDA]
    assert other.result() == [0.75, 5.0]
