"""PyTorch integration: torchrun set-up and rank helpers (``mp``), cross-rank metric reduction.

Importing it imports torch; ``import expmate`` alone does not.

Example:
    >>> from expmate.torch import mp
    >>> mp.get_world_size()
    1
"""

from __future__ import annotations

from expmate.torch import mp
from expmate.torch.reduce import MetricMismatchError, MetricReducer, SyncTimeoutError

__all__ = ["MetricMismatchError", "MetricReducer", "SyncTimeoutError", "mp"]
