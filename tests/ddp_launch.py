"""Launch real torchrun jobs from tests: CPU, gloo, loopback, a free port, a hard timeout.

Every launch runs in its own process session, and on timeout its whole process *tree* is killed,
so a hang fails its test instead of leaving workers behind: ``subprocess.run(timeout=...)`` kills
only torchrun, and killing torchrun's process group is not enough either, since torchrun starts
each worker in a session of its own (the workers would keep the output pipes open and
``communicate()`` would wait for them forever).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LaunchResult:
    """What a finished (or killed) launch left behind."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for workers: one thread each, the repo importable, no colors, no git
    capture."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        NO_COLOR="1",
        GLOO_SOCKET_IFNAME="lo",
        # run.json without the git state of the repository the tests run from (conftest.py).
        EXPMATE_CAPTURE_GIT="0",
    )
    env.pop("FORCE_COLOR", None)
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    if extra:
        env.update(extra)
    return env


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and every process descended from it, wherever their sessions are.

    The root is stopped first, so it starts no new process while the tree is collected; the
    tree is collected before anything dies (an orphan is re-parented and lost from the tree).

    Returns:
        The pids killed.
    """
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    with contextlib.suppress(psutil.Error):
        root.suspend()
    tree = [root]
    with contextlib.suppress(psutil.Error):
        tree += root.children(recursive=True)
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(tree, timeout=10)
    return [proc.pid for proc in tree]


def run_group(
    argv: list[str], *, timeout: float, env: dict[str, str], cwd: Path | str | None = None
) -> LaunchResult:
    """Run ``argv`` in a new session; on timeout kill its whole process tree."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return LaunchResult(proc.returncode, out, err, timed_out=False)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything else left in torchrun's session
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired as late:  # a pipe still held open: give up reading
            proc.kill()
            out = _text(late.stdout)
            err = _text(late.stderr) + "\n(output pipes still open after the kill)"
        return LaunchResult(proc.returncode, out, err, timed_out=True)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def torchrun(
    script: Path | str,
    *args: str,
    nproc: int = 2,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    extra_torchrun_args: tuple[str, ...] = (),
) -> LaunchResult:
    """Run ``script`` under ``python -m torch.distributed.run`` on one loopback port.

    Args:
        script: the worker script.
        *args: arguments for the script.
        nproc: processes on this "node".
        timeout: seconds before the whole process group is killed.
        env: extra environment variables for the workers.
        cwd: working directory.
        extra_torchrun_args: more torchrun flags (they replace the default standalone rendezvous
            when they name ``--rdzv-endpoint`` or ``--master-port``).
    """
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if not any(
        a.startswith(("--rdzv-endpoint", "--rdzv_endpoint", "--master-port"))
        for a in extra_torchrun_args
    ):
        launcher += ["--master-addr=127.0.0.1", f"--master-port={free_port()}"]
    argv = [*launcher, *extra_torchrun_args, str(script), *args]
    return run_group(argv, timeout=timeout, env=worker_env(env), cwd=cwd)


def launch_once(
    name: str, request: Any, tmp_path_factory: Any, launch: Callable[[Path], LaunchResult]
) -> tuple[Path, LaunchResult]:
    """Run ``launch(run_dir)`` once per test session, even when pytest-xdist spreads the tests
    that share it over several workers (they wait on a lock file and read the first result).

    Args:
        name: names the shared run directory (one per kind of launch).
        request, tmp_path_factory: the fixture's pytest objects.
        launch: starts the job in the given (existing) run directory and returns its result.
    """
    if not hasattr(request.config, "workerinput"):
        run_dir = tmp_path_factory.mktemp(name)
        return run_dir, launch(run_dir)
    shared = tmp_path_factory.getbasetemp().parent / f"{name}_shared"
    shared.mkdir(exist_ok=True)
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = shared / "launch.json"
        if not record.exists():
            (shared / "run").mkdir(exist_ok=True)
            record.write_text(json.dumps(asdict(launch(shared / "run"))))
        return shared / "run", LaunchResult(**json.loads(record.read_text()))
