"""Where this process stands in a torchrun job, found without importing torch.

The process group is consulted only when the script already imported ``torch.distributed``;
otherwise torchrun's environment variables (``RANK``, ``WORLD_SIZE``) answer, and a plain
``python train.py`` is rank 0 of 1.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _dist() -> Any:
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def process_group_ready() -> bool:
    """True when ``torch.distributed`` was imported and its default process group is up."""
    return _dist() is not None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def detect_rank() -> int:
    """This process's global rank: the process group's, else ``RANK``, else 0."""
    dist = _dist()
    if dist is not None:
        return int(dist.get_rank())
    return _env_int("RANK", 0)


def detect_world_size() -> int:
    """The number of processes in the job: the process group's, else ``WORLD_SIZE``, else 1."""
    dist = _dist()
    if dist is not None:
        return int(dist.get_world_size())
    return _env_int("WORLD_SIZE", 1)
