"""Live mirrors: a run's metrics, config and best values copied to TensorBoard, W&B or MLflow.

``ExperimentLogger(..., mirror=["tensorboard", "wandb", "mlflow"])`` (names, :class:`Mirror`
instances, or both) forwards from global rank 0 exactly the rows written to ``metrics.csv``
(under torchrun: the reduced values), the ``parse_config`` config as hyperparameters, and the
best values at close. Each tracker's library is imported on the mirror's own thread when it
starts; training only appends rows to a bounded queue. See ``docs/integrations.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from expmate.mirrors.base import MetricRow, Mirror, RunInfo, flat_config
from expmate.mirrors.mlflow_mirror import MlflowMirror
from expmate.mirrors.tensorboard_mirror import TensorBoardMirror
from expmate.mirrors.wandb_mirror import WandbMirror

KNOWN: dict[str, type[Mirror]] = {
    "mlflow": MlflowMirror,
    "tensorboard": TensorBoardMirror,
    "wandb": WandbMirror,
}


def build_mirrors(spec: Any) -> list[Mirror]:
    """The mirrors named or given by ``spec``: a name, a :class:`Mirror`, or a sequence of them.

    Raises:
        ValueError: an unknown name (the known ones are listed), or a name given twice.
        TypeError: something that is neither a name nor a Mirror.
        ModuleNotFoundError: a named tracker's package is not installed (the message names the
            ``pip install "expmate[...]"`` that adds it).
    """
    items = [spec] if isinstance(spec, (str, Mirror)) else spec
    if not isinstance(items, Iterable) or isinstance(items, (bytes, dict)):
        raise TypeError(
            f"mirror must be a name, a Mirror or a list of them, not {type(spec).__name__}"
        )
    mirrors: list[Mirror] = []
    names: set[str] = set()
    for item in items:
        if isinstance(item, Mirror):
            mirrors.append(item)
            continue
        if not isinstance(item, str):
            raise TypeError(f"a mirror is a name or a Mirror instance, not {item!r}")
        key = item.strip().lower()
        if key not in KNOWN:
            known = ", ".join(repr(name) for name in KNOWN)
            raise ValueError(
                f"unknown mirror {item!r}; known mirrors: {known} (or a Mirror instance)"
            )
        if key in names:
            raise ValueError(f"mirror {item!r} is given twice")
        names.add(key)
        mirrors.append(KNOWN[key]())
    return mirrors


__all__ = [
    "KNOWN",
    "MetricRow",
    "Mirror",
    "MlflowMirror",
    "RunInfo",
    "TensorBoardMirror",
    "WandbMirror",
    "build_mirrors",
    "flat_config",
]
