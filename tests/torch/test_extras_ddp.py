"""Under real torchrun on a pseudo-terminal: run.json's ranks and torchrun record, the progress bar
on rank 0 only, system metrics in each rank's own file and their maxima in metrics.csv."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import socket
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import psutil
import pytest

from tests.ddp_launch import free_port, worker_env
from tests.helpers import read_csv

WORKER = Path(__file__).parent / "workers" / "extras_worker.py"

pytestmark = pytest.mark.ddp


def torchrun_on_a_terminal(run_dir: Path, port: int, timeout: float) -> tuple[int, str, str]:
    """Run the worker under torchrun with stdout on a pty (100 columns): (code, tty, stderr).

    On timeout every process of the tree is killed (torchrun puts its workers in sessions of
    their own, out of reach of a process-group kill).
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
        str(WORKER),
        str(run_dir),
    ]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=worker_env(),
        start_new_session=True,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = psutil.Process(proc.pid).children(recursive=True)
        for process in [psutil.Process(proc.pid), *tree]:
            process.kill()
        _, err = proc.communicate()
    reader.join(10)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace"), err.decode()


def samples_of(path: Path) -> list[list[list[str]]]:
    """The system rows of a metrics file, one list per sample (rows sharing a wall time)."""
    samples: list[list[list[str]]] = []
    for row in read_csv(path)[1:]:
        if row[1] != "system":
            continue
        if not samples or samples[-1][0][4] != row[4]:
            samples.append([])
        samples[-1].append(row)
    return samples


def check_system_maxima(run_dir: Path) -> None:
    """Each rank's own samples are in its own file (rank 0: metrics_rank0.csv); metrics.csv has
    the maxima, exactly: the collective made at step s carries sample s + 1 of both ranks, and
    its result comes back at step s + 1 with the step of the values reduced then (s - 1). So
    metrics.csv's j-th sample is the maximum of both ranks' sample j + 2 (the first sample is
    never sent), at step j, with the newer of the two wall times."""
    own = [samples_of(run_dir / f"metrics_rank{r}.csv") for r in (0, 1)]
    for samples in own:
        assert [[row[2] for row in s] for s in samples] == [["cpu_percent", "rss_mib"]] * 6
        # Sample k is taken at the top of step k - 1; the latest reduced step by then is at
        # most k - 3 (its collective may still be in flight).
        steps = [int(s[0][0]) for s in samples]
        assert steps == sorted(steps) and all(
            0 <= n <= max(0, k - 3) for k, n in enumerate(steps, 1)
        )
    assert [r for r in read_csv(run_dir / "metrics_rank0.csv")[1:] if r[1] != "system"] == []
    maxima = samples_of(run_dir / "metrics.csv")
    assert len(maxima) == 5
    for j, rows in enumerate(maxima):
        first, second = own[0][j + 1], own[1][j + 1]
        wall = max(first[0][4], second[0][4], key=float)
        expected = [
            [str(j), "system", a[2], repr(max(float(a[3]), float(b[3]))), wall]
            for a, b in zip(first, second, strict=True)
        ]
        assert rows == expected, j
        assert float(second[1][3]) > float(first[1][3]) + 32  # rank 1's RSS is the larger
        assert rows[1][3] == second[1][3]


def test_run_json_progress_and_system_metrics(tmp_path: Path) -> None:
    """One 2-rank job: every rank's host and pid in run.json, torchrun's record, one bar (rank
    0's, with the reduced loss) on the terminal and none in the files, system rows per rank and
    their maxima in metrics.csv; a logger made on rank 0 alone does not block and records rank
    1 as missing."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    port = free_port()
    code, terminal, err = torchrun_on_a_terminal(run_dir, port, timeout=120)
    assert code == 0, terminal + err

    record = json.loads((run_dir / "run.json").read_text())
    host = socket.gethostname()
    pids = [int((run_dir / f"pid_rank{r}.txt").read_text()) for r in range(2)]
    assert (record["status"], record["world_size"]) == ("finished", 2)
    assert record["ranks"] == [
        {"rank": r, "local_rank": r, "host": host, "pid": pids[r], "gpu": None} for r in range(2)
    ]
    assert record["torchrun"] == {
        "restart_count": 0,
        "max_restarts": 0,
        "group_rank": 0,
        "group_world_size": 1,
        "local_world_size": 2,
        "master_port": port,
        "run_id": "none",
        "role_name": "default",
        "master_addr": "127.0.0.1",
    }

    segments = terminal.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    bars = [s for s in segments if s.startswith("bar of rank 0: 100%|")]
    assert bars and " 6/6 [" in bars[-1] and "it/s, train/loss=4.5]" in bars[-1]
    assert "bar of rank 1" not in terminal
    console = [s.split(" - ", 2)[2] for s in segments if " - INFO - " in s]
    assert console == ["rank 0 at step 3"]
    assert "|" not in (run_dir / "exp.log").read_text()
    assert "|" not in (run_dir / "events.jsonl").read_text()
    assert (run_dir / "exp_rank1.log").read_text().endswith(" - INFO - rank 1 at step 3\n")

    check_system_maxima(run_dir)
    reduced = [(r[0], r[3]) for r in read_csv(run_dir / "metrics.csv")[1:] if r[2] == "loss"]
    assert reduced == [(str(s), str(s + 0.5)) for s in range(6)]
    assert [r for r in read_csv(run_dir / "metrics_rank1.csv")[1:] if r[1] != "system"] == []

    # A logger created on rank 0 only neither blocks nor waits: rank 1 is recorded as missing.
    alone = json.loads((run_dir / "rank0_only" / "run.json").read_text())
    assert alone["ranks"] == [
        {"rank": 0, "local_rank": 0, "host": host, "pid": pids[0], "gpu": None},
        {"rank": 1, "missing": True},
    ]
    assert float((run_dir / "rank0_only_seconds.txt").read_text()) < 10
