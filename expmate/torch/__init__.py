"""PyTorch integration: torchrun set-up and rank helpers (``mp``), cross-rank metric reduction,
and checkpoints that agree with the metrics (``CheckpointManager``).

Importing it imports torch; ``import expmate`` alone does not.

Example:
    >>> from expmate.torch import mp
    >>> mp.get_world_size()
    1
"""

from __future__ import annotations

from expmate.torch import mp
from expmate.torch.checkpoint import CheckpointError, CheckpointManager, CheckpointSyncError
from expmate.torch.reduce import MetricMismatchError, MetricReducer, SyncTimeoutError

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "CheckpointSyncError",
    "MetricMismatchError",
    "MetricReducer",
    "SyncTimeoutError",
    "mp",
]
