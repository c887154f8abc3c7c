"""Run identifiers: a fresh one per run, and the same one on every rank of a torchrun job.

A run id looks like ``20250123_143022_a1b2c3``: the local start time, to the second, and six random
hex digits, so that two runs started in the same second still differ and ids sort by start time.

Under ``torchrun`` every worker calls :func:`shared_run_id` and gets rank 0's value. Nothing here
imports torch unless a multi-process job is detected, so a single-process script stays torch-free.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from datetime import timedelta
from typing import Any

_KEY_PREFIX = "expmate/run_id"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

# How many times this process has asked for a shared id: every rank asks the same number of times,
# so the n-th call of each rank meets the n-th call of the others under the same store key.
_calls = 0


def new_run_id() -> str:
    """A new run id: local timestamp plus a random hex suffix.

    Example:
        >>> len(new_run_id())
        22
    """
    return f"{time.strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(3)}"


def shared_run_id(candidate: str | None = None, *, timeout: float = 300.0) -> str:
    """The run id of this job: the same value on every rank.

    Rank 0 decides (its ``candidate``, else an id reused from an earlier torchrun attempt of the
    same job, else a new one) and the other ranks adopt its value:

    - one process (``WORLD_SIZE`` unset or 1, no process group): ``candidate`` or a new id;
    - a process group already initialised: broadcast from rank 0 (``broadcast_object_list``);
    - torchrun's environment (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``): exchanged through
      torchrun's own ``TCPStore``, under a key per restart attempt;
    - otherwise ``candidate``, or an id derived from ``TORCHELASTIC_RUN_ID`` when it is set.

    Args:
        candidate: the id this rank would use (for example ``run_id=...`` from the command line).
        timeout: seconds a rank waits for rank 0's value before giving up.

    Raises:
        RuntimeError: rank 0's value did not arrive within ``timeout`` seconds.
    """
    global _calls
    _calls += 1
    dist: Any = sys.modules.get("torch.distributed")
    if _group_ready(dist) and dist.get_world_size() > 1:
        return _broadcast(dist, candidate, call=_calls)
    if _world_size() <= 1:
        return candidate or new_run_id()
    if all(os.environ.get(name) for name in ("MASTER_ADDR", "MASTER_PORT", "RANK")):
        return _exchange_through_store(candidate, call=_calls, timeout=timeout)
    elastic_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if candidate:
        return candidate
    if elastic_id and elastic_id != "none":
        return _UNSAFE.sub("_", elastic_id)
    return new_run_id()


def _group_ready(dist: Any) -> bool:
    return dist is not None and bool(dist.is_available()) and bool(dist.is_initialized())


def _world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE") or 1)
    except ValueError:
        return 1


def _attempt() -> int:
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0)
    except ValueError:
        return 0


def _key(call: int, attempt: int) -> str:
    return f"{_KEY_PREFIX}/{call}/attempt_{attempt}"


def _broadcast(dist: Any, candidate: str | None, *, call: int) -> str:
    """Rank 0's choice, broadcast over the existing process group."""
    box: list[str | None] = [None]
    if dist.get_rank() == 0:
        # Rank 0 must reach the broadcast whatever happens, or the other ranks would hang in it.
        try:
            box[0] = _rank0_choice(candidate, _agent_store(timeout=30.0), call=call)
        except (RuntimeError, OSError, ValueError):  # the store only remembers across restarts
            box[0] = candidate or new_run_id()
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def _exchange_through_store(candidate: str | None, *, call: int, timeout: float) -> str:
    """Rank 0 writes its choice into torchrun's store; the other ranks wait for it."""
    store = _open_store(timeout=timeout)
    key = _key(call, _attempt())
    if int(os.environ["RANK"]) == 0:
        return _rank0_choice(candidate, store, call=call)
    try:
        store.wait([key], timedelta(seconds=timeout))
    except (RuntimeError, OSError) as exc:  # DistStoreError is a RuntimeError
        raise RuntimeError(
            f"run id: rank 0 did not publish {key!r} within {timeout:g} s "
            f"(does every rank call parse_config()/shared_run_id() the same number of times?)"
        ) from exc
    return bytes(store.get(key)).decode("utf-8")


def _rank0_choice(candidate: str | None, store: Any | None, *, call: int) -> str:
    """Rank 0's id: the candidate, else the id of an earlier attempt of this job, else a new one.

    Reusing the earlier attempt's id keeps a job restarted by torchrun (``--max-restarts``) in
    the run directory it started in. The choice is recorded for the other ranks and for later
    attempts when a store is available.
    """
    value = candidate
    if not value and store is not None:
        for earlier in range(_attempt() - 1, -1, -1):
            if store.check([_key(call, earlier)]):
                value = bytes(store.get(_key(call, earlier))).decode("utf-8")
                break
    value = value or new_run_id()
    if store is not None:
        store.set(_key(call, _attempt()), value)
    return value


# Rank 0's server when it hosts the store itself: kept alive so the other ranks can still read it,
# and shared with a later init_process_group() on the same port (multi-tenant TCPStore).
_hosted_store: Any | None = None


def _open_store(*, timeout: float) -> Any:
    """A client of torchrun's store (or, when the agent does not share one, rank 0's server)."""
    global _hosted_store
    from torch.distributed import TCPStore

    host = os.environ["MASTER_ADDR"]
    port = int(os.environ["MASTER_PORT"])
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return TCPStore(host, port, is_master=False, timeout=timedelta(seconds=timeout))
    is_rank0 = int(os.environ["RANK"]) == 0
    store = TCPStore(
        host,
        port,
        world_size=_world_size(),
        is_master=is_rank0,
        timeout=timedelta(seconds=timeout),
        multi_tenant=True,
        wait_for_workers=False,
    )
    if is_rank0:
        _hosted_store = store
    return store


def _agent_store(*, timeout: float) -> Any | None:
    """torchrun's agent store when the job runs under torchrun with a shared store, else None."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    if not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
        return None
    return _open_store(timeout=timeout)
