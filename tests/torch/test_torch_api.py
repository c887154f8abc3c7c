"""The public surface of `expmate.torch`: exported names."""

from __future__ import annotations

import expmate.torch


def test_all_is_pinned() -> None:
    """expmate.torch.__all__ holds exactly the documented names, sorted, each defined."""
    assert expmate.torch.__all__ == [
        "CheckpointError",
        "CheckpointManager",
        "CheckpointSyncError",
        "MetricMismatchError",
        "MetricReducer",
        "SyncTimeoutError",
        "mp",
    ]
    assert [name for name in expmate.torch.__all__ if not hasattr(expmate.torch, name)] == []
