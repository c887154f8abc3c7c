"""A nested config as one level of dotted keys: ``{"training": {"lr": 0.1}}`` -> ``training.lr``.

The one flattening behind the config columns of :func:`expmate.runs.runs_table`, ``expmate show``
and ``expmate export``, and the config the mirrors send to trackers. It imports nothing, so a
logger with mirrors starts without the configuration modules.
"""

from __future__ import annotations

from typing import Any


def dotted_leaves(tree: Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Every leaf of a nested config under its dotted key, in order; an empty mapping is a leaf.

    Example:
        >>> dotted_leaves({"training": {"lr": 0.1, "layers": [2, 3]}, "seed": 1})
        {'training.lr': 0.1, 'training.layers': [2, 3], 'seed': 1}
    """
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(dotted_leaves(value, name, sep))
        else:
            out[name] = value
    return out
