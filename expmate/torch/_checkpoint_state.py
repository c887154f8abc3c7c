"""What goes into a checkpoint and back out: state dicts, random number generator states, sharding.

A plain checkpoint is one ``torch.save`` file of :func:`payload` written through a file object (so
the bytes do not depend on the file's name: a synchronous and an asynchronous save of the same
state are identical). A sharded one is a torch.distributed.checkpoint directory of the model and
optimizer shards plus ``state.pt``, the rest of the payload, written by rank 0.
"""

from __future__ import annotations

import copy
import pickle
import random
import sys
from typing import Any

import torch

FORMAT = 1
PARTS = ("optimizer", "scheduler", "scaler")


def check_stateful(obj: Any, what: str) -> None:
    """Raise TypeError unless ``obj`` has ``state_dict()`` and ``load_state_dict()``."""
    if not (
        callable(getattr(obj, "state_dict", None))
        and callable(getattr(obj, "load_state_dict", None))
    ):
        raise TypeError(
            f"{what} must have state_dict() and load_state_dict() (a torch.nn.Module, optimizer, "
            f"scheduler or scaler), not {type(obj).__module__}.{type(obj).__qualname__}"
        )


def unwrap(model: Any) -> Any:
    """The module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def is_sharded(state: dict[str, Any]) -> bool:
    """Whether a model state dict holds DTensor or ShardedTensor values (FSDP, tensor parallel).

    Only the classes of modules already imported are checked: a state cannot hold a DTensor when
    ``torch.distributed.tensor`` was never imported (and importing it costs a second).
    """
    kinds = tuple(
        getattr(module, name)
        for module_name, name in _SHARDED_KINDS
        if (module := sys.modules.get(module_name)) is not None and hasattr(module, name)
    )
    return bool(kinds) and any(isinstance(v, kinds) for v in state.values())


_SHARDED_KINDS = (
    ("torch.distributed.tensor", "DTensor"),
    ("torch.distributed._shard.sharded_tensor", "ShardedTensor"),
)


# ---------------------------------------------------------------------- random number generators


def capture_rng() -> dict[str, Any]:
    """This process's Python, numpy (when imported), torch and CUDA (when initialised) states."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        name, keys, pos, has_gauss, cached = numpy.random.get_state()
        state["numpy"] = (name, keys.tolist(), int(pos), int(has_gauss), float(cached))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> list[str]:
    """Set the generators to ``state`` (from :func:`capture_rng`); returns notes on what could not
    be restored (a CUDA state saved with another number of devices, ...)."""
    notes: list[str] = []
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"].cpu())
    if "numpy" in state:
        import numpy

        name, keys, pos, has_gauss, cached = state["numpy"]
        numpy.random.set_state(
            (name, numpy.asarray(keys, dtype=numpy.uint32), pos, has_gauss, cached)
        )
    cuda = state.get("cuda")
    if cuda is not None:
        if not torch.cuda.is_available():
            notes.append("the CUDA generator states were saved with CUDA; CUDA is not available")
        elif len(cuda) != torch.cuda.device_count():
            notes.append(
                f"{len(cuda)} CUDA generator states were saved, {torch.cuda.device_count()} "
                "devices are visible: only the current device's state was restored"
            )
            device = torch.cuda.current_device()
            if device < len(cuda):
                torch.cuda.set_rng_state(cuda[device].cpu(), device)
        else:
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    return notes


def _as_tuple(value: Any) -> Any:
    """Lists back to the tuples ``random.setstate`` requires (a state may come back as lists)."""
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_as_tuple(v) for v in value)
    return value


# ---------------------------------------------------------------------- payloads


def payload(
    step: int,
    *,
    model: dict[str, Any] | None,
    parts: dict[str, Any],
    extra: Any,
    rng: list[dict[str, Any]],
    monitor: dict[str, Any] | None,
) -> dict[str, Any]:
    """The dict a checkpoint holds; ``model`` is None in the ``state.pt`` of a sharded one."""
    data: dict[str, Any] = {"format": FORMAT, "step": step}
    if model is not None:
        data["model"] = model
    for name in PARTS:
        if name in parts:
            data[name] = parts[name]
    data["extra"] = extra
    data["rng"] = rng
    data["world_size"] = len(rng)
    data["monitor"] = monitor
    return data


def part_states(objects: dict[str, Any]) -> dict[str, Any]:
    """``state_dict()`` of every given optimizer / scheduler / scaler."""
    return {name: obj.state_dict() for name, obj in objects.items() if obj is not None}


def check_payload(data: Any, step: int) -> dict[str, Any]:
    """``data`` if it is a checkpoint of ``step``, else ValueError saying what is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("not a checkpoint written by expmate (no 'format': 1)")
    if data.get("step") != step:
        raise ValueError(f"it holds step {data.get('step')!r}, not {step}")
    return data


def load_parts(data: dict[str, Any], objects: dict[str, Any]) -> None:
    """``load_state_dict`` of every given optimizer / scheduler / scaler from ``data``."""
    for name, obj in objects.items():
        if obj is None:
            continue
        if name not in data:
            raise KeyError(f"the checkpoint has no {name} state (it was saved without {name}=)")
        obj.load_state_dict(data[name])


# ---------------------------------------------------------------------- host snapshots


def snapshot(obj: Any) -> Any:
    """A copy of ``obj`` whose tensors are copies in host memory, for a background write.

    Tensors found in dicts, lists and tuples are copied storage by storage (views of one storage
    stay views of one copy, so the file is the same as a save of ``obj`` itself); everything else
    is deep-copied, so training may change the originals at once.

    Raises:
        TypeError: something in ``obj`` cannot be copied (it could not be saved either).
    """
    storages: dict[tuple[int, str, int], Any] = {}
    memo: dict[int, Any] = {}
    for tensor in _tensors(obj):
        memo[id(tensor)] = _host_copy(tensor, storages)
    try:
        return copy.deepcopy(obj, memo)
    except Exception as exc:
        raise TypeError(f"cannot copy the state for a background save: {exc}") from exc


class _StructureProbe(pickle.Pickler):
    """Pickles everything but tensor data (stood in for by a persistent id), to a sink."""

    def persistent_id(self, obj: Any) -> Any:
        return 0 if isinstance(obj, torch.Tensor) else None


class _Sink:
    def write(self, data: bytes) -> int:
        return len(data)


def check_picklable(obj: Any) -> None:
    """Raise (PicklingError, TypeError, AttributeError) now if ``torch.save(obj)`` would fail on
    something other than a tensor: what a background save would otherwise find too late."""
    _StructureProbe(_Sink(), protocol=2).dump(obj)


def _tensors(obj: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found


def _host_copy(tensor: torch.Tensor, storages: dict[tuple[int, str, int], Any]) -> torch.Tensor:
    storage = tensor.untyped_storage()
    key = (storage.data_ptr(), str(storage.device), storage.nbytes())
    copied = storages.get(key)
    if copied is None:
        whole = torch.empty(0, dtype=torch.uint8, device=storage.device).set_(storage)
        copied = whole.to("cpu", copy=True).untyped_storage()  # the copy off the device
        storages[key] = copied
    out = torch.empty(0, dtype=tensor.dtype)
    out.set_(copied, tensor.storage_offset(), tensor.size(), tensor.stride())
    return out


# ---------------------------------------------------------------------- sharded states


def sharded_states(model: Any, optimizer: Any) -> dict[str, Any]:
    """The model's (and optimizer's) state for torch.distributed.checkpoint, keyed by FQN."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    states: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        states["optimizer"] = get_optimizer_state_dict(model, optimizer)
    return states


def load_sharded_into(model: Any, optimizer: Any, checkpoint: str, group: Any) -> None:
    """Read the shards of this rank into ``model`` (and ``optimizer``): a collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    states = sharded_states(model, optimizer)
    dcp.load(states, checkpoint_id=checkpoint, process_group=group)
    set_model_state_dict(model, states["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, states["optimizer"])


def load_sharded_full(checkpoint: str, group: Any) -> dict[str, Any]:
    """Every tensor of a sharded checkpoint, whole, on this rank (a collective)."""
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

    return _load_state_dict_from_keys(checkpoint_id=checkpoint, process_group=group)
