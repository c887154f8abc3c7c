"""torchrun set-up, rank helpers, and timers compared across ranks.

Everything here works in a plain ``python`` process too: without torchrun's environment
:func:`setup_ddp` returns ``(0, 0, 1)``, creates no process group, and the helpers answer for a
single process.

Example:
    >>> from expmate.torch import mp
    >>> rank, local_rank, world_size = mp.setup_ddp()
    >>> mp.is_main_process()
    True
    >>> mp.cleanup_ddp()
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import torch
import torch.distributed as dist

from expmate.torch import reduce as _reduce

__all__ = [
    "RankTimes",
    "barrier",
    "cleanup_ddp",
    "default_backend",
    "gather_elapsed",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "main_process_only",
    "setup_ddp",
    "timer_across_ranks",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_TIMEOUT = 1800.0
"""Seconds for the default process group's collectives (torch's own default)."""

_TIMER_TIMEOUT = 300.0
_timer_group: Any = None


def _seconds(timeout: float | timedelta) -> timedelta:
    if isinstance(timeout, timedelta):
        return timeout
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    return timedelta(seconds=float(timeout))


def default_backend() -> str:
    """``"nccl"`` when CUDA is available, else ``"gloo"``."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def _launched(environ: Mapping[str, str]) -> bool:
    return "RANK" in environ and "WORLD_SIZE" in environ


def _elastic_store(environ: Mapping[str, str], timeout: timedelta) -> dist.Store | None:
    """The store to initialise on when torchrun's agent hosts it, prefixed by restart attempt.

    With ``TORCHELASTIC_USE_AGENT_STORE=True`` the agent's TCPStore outlives a worker restart; a
    group initialised on it unprefixed can read the dead attempt's peer addresses and fail or hang.
    A prefix per attempt gives every attempt a clean namespace.
    """
    if environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    attempt = environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    client = dist.TCPStore(
        environ["MASTER_ADDR"], int(environ["MASTER_PORT"]), is_master=False, timeout=timeout
    )
    return dist.PrefixStore(f"/expmate/attempt_{attempt}", client)


def setup_ddp(
    backend: str | None = None, timeout: float | timedelta = DEFAULT_TIMEOUT
) -> tuple[int, int, int]:
    """Initialise the default process group from torchrun's environment.

    Reads ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; picks
    NCCL with CUDA, else gloo; with CUDA sets the device to ``LOCAL_RANK``. Calling it again
    returns the same triple. Without torchrun's environment it returns ``(0, 0, 1)`` and creates
    no process group.

    Args:
        backend: ``"nccl"``, ``"gloo"``, ...; default :func:`default_backend`.
        timeout: seconds (or a timedelta) for the default group's collectives.

    Returns:
        ``(rank, local_rank, world_size)``.

    Raises:
        RuntimeError: under torchrun with a torch built without distributed support.
    """
    if dist.is_available() and dist.is_initialized():
        return get_rank(), get_local_rank(), get_world_size()
    if not _launched(os.environ):
        return 0, 0, 1
    if not dist.is_available():
        raise RuntimeError("RANK/WORLD_SIZE are set but torch.distributed is not available")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = get_local_rank()
    chosen = backend or default_backend()
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)
    wait = _seconds(timeout)
    store = _elastic_store(os.environ, wait)
    if store is None:
        dist.init_process_group(chosen, rank=rank, world_size=world_size, timeout=wait)
    else:
        dist.init_process_group(chosen, store=store, rank=rank, world_size=world_size, timeout=wait)
    return rank, local_rank, world_size


def cleanup_ddp() -> None:
    """Reduce what open metric reducers still buffer, then destroy the process group.

    A collective when a group exists (every rank must call it); does nothing otherwise.
    """
    global _timer_group
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        _reduce.close_all()
    finally:
        _timer_group = None
        dist.destroy_process_group()


def get_rank() -> int:
    """Global rank: from the process group, else ``RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def get_local_rank() -> int:
    """Rank on this machine: ``LOCAL_RANK``, else 0."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def get_world_size() -> int:
    """Number of processes: from the process group, else ``WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on global rank 0 (and in a single process)."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (a collective); does nothing without a group of several ranks."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def main_process_only(fn: Callable[P, R]) -> Callable[P, R | None]:
    """Run ``fn`` on global rank 0 only; other ranks get None without calling it.

    ``fn`` must not contain a collective (barrier, all_reduce, creating a logger in a job that
    reduces metrics, ...): the other ranks would never join it and the job would block.

    Example:
        >>> @main_process_only
        ... def save(path: str) -> str:
        ...     return path
        >>> save("model.pt")
        'model.pt'
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        if is_main_process():
            return fn(*args, **kwargs)
        return None

    return wrapper


@dataclass(frozen=True)
class RankTimes:
    """One timing compared across ranks."""

    elapsed: float
    """This rank's seconds."""
    max: float
    max_rank: int
    min: float
    min_rank: int
    mean: float
    world_size: int

    def as_dict(self) -> dict[str, float]:
        """The fields as a dict (what :func:`timer_across_ranks` yields)."""
        return dict(asdict(self))


def _group() -> Any:
    global _timer_group
    if _timer_group is None:
        _timer_group = dist.new_group(backend="gloo", timeout=timedelta(seconds=_TIMER_TIMEOUT))
    return _timer_group


def gather_elapsed(elapsed: float) -> RankTimes:
    """Compare one rank's seconds with every other rank's: one collective (all ranks call it).

    The first call in a job creates a gloo group (300 s timeout), also a collective.

    Args:
        elapsed: this rank's seconds.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return RankTimes(elapsed, elapsed, get_rank(), elapsed, get_rank(), elapsed, 1)
    group = _group()
    world = dist.get_world_size()
    out = torch.empty(world, dtype=torch.float64)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, torch.tensor([float(elapsed)], dtype=torch.float64), group=group)
    times = out.tolist()
    top = max(range(world), key=times.__getitem__)
    low = min(range(world), key=times.__getitem__)
    return RankTimes(elapsed, times[top], top, times[low], low, sum(times) / world, world)


def _timer_enabled() -> bool:
    import expmate

    return bool(getattr(expmate, "timer", True))


@contextmanager
def timer_across_ranks(
    logger: Any, name: str, *, log_result: bool = True, cuda_sync: bool = False
) -> Iterator[dict[str, float]]:
    """Time a block on every rank and report the slowest rank: one collective at the end.

    Every rank must enter and leave the block at the same point. On leaving, the yielded dict is
    filled with ``elapsed`` (this rank), ``max``/``max_rank``, ``min``/``min_rank``, ``mean`` and
    ``world_size`` on every rank, and global rank 0 logs through ``logger.info``:
    ``Timer [name]: max 0.5123s on rank 1 (mean 0.4000s, min 0.3000s on rank 0, 2 ranks)`` with
    the numbers as event fields. A block that raises skips the collective and logs nothing.
    With ``expmate.timer = False`` (set it alike on every rank) nothing is measured or gathered.

    Args:
        logger: an :class:`expmate.ExperimentLogger` (anything with ``info(message, **fields)``).
        name: the timer's name.
        log_result: False to only fill the dict.
        cuda_sync: call ``torch.cuda.synchronize()`` at both ends, so queued GPU work is counted.
    """
    result: dict[str, float] = {"elapsed": 0.0}
    if not _timer_enabled():
        yield result
        return
    sync = cuda_sync and torch.cuda.is_available()
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    yield result
    if sync:
        torch.cuda.synchronize()
    times = gather_elapsed(time.perf_counter() - start)
    result.update(times.as_dict())
    if log_result and is_main_process():
        _log_times(logger, name, times)


def _log_times(logger: Any, name: str, times: RankTimes) -> None:
    message = (
        f"Timer [{name}]: max {times.max:.4f}s on rank {times.max_rank} "
        f"(mean {times.mean:.4f}s, min {times.min:.4f}s on rank {times.min_rank}, "
        f"{times.world_size} rank{'s' if times.world_size != 1 else ''})"
    )
    logger.info(
        message,
        timer=name,
        elapsed_max=times.max,
        max_rank=times.max_rank,
        elapsed_mean=times.mean,
        elapsed_min=times.min,
        min_rank=times.min_rank,
        world_size=times.world_size,
    )
