"""The CUDA devices this process uses, asked of torch only when the script already set CUDA up.

Nothing here imports torch or initialises CUDA: asking a process that has not touched the GPU
would create a CUDA context (hundreds of MiB, on device 0 for every rank). A process counts as
using CUDA once torch has initialised it (``torch.cuda.is_initialized()``, true after
``torch.cuda.set_device``, which ``expmate.torch.mp.setup_ddp`` calls, or the first tensor on
the GPU).
"""

from __future__ import annotations

import sys
from typing import Any


def initialised_cuda() -> Any:
    """``torch.cuda`` when torch is imported and has initialised CUDA in this process, else None."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None:
        return None
    try:
        return cuda if cuda.is_initialized() else None
    except Exception:  # noqa: BLE001 - a half-imported or broken torch: no GPU known
        return None


def used_devices(cuda: Any) -> list[int]:
    """The device indices this process uses: the current device and any holding memory of ours."""
    current = int(cuda.current_device())
    others = [
        index
        for index in range(int(cuda.device_count()))
        if index != current and cuda.memory_reserved(index) > 0
    ]
    return sorted([current, *others])


def device_info(cuda: Any, index: int) -> dict[str, Any]:
    """Index, name, UUID and total memory (bytes) of CUDA device ``index``."""
    props = cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)
    return {
        "index": index,
        "name": str(props.name),
        "uuid": None if uuid is None else str(uuid),
        "memory_bytes": int(props.total_memory),
    }


def current_device_info() -> dict[str, Any] | None:
    """:func:`device_info` of the current device, or None when this process has not set up CUDA."""
    cuda = initialised_cuda()
    if cuda is None:
        return None
    try:
        return device_info(cuda, int(cuda.current_device()))
    except Exception:  # noqa: BLE001 - a driver error: record no GPU rather than fail the run
        return None
