"""Helpers for the core tests: strict readers of a run's files and a logger with a captured console."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from expmate import ExperimentLogger

REPO_ROOT = Path(__file__).resolve().parent.parent


def process_env() -> dict[str, str]:
    """The environment for a worker process: the repo importable, unbuffered output, and none of
    torchrun's variables from the shell that runs the tests."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC_RESTART_COUNT"):
        env.pop(name, None)
    return env


def start_worker(script: Path, *args: str) -> subprocess.Popen[str]:
    """``python script *args`` in a session of its own (its whole group can be killed), with
    :func:`process_env`, and its stdout and stderr as text pipes."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=process_env(),
        start_new_session=True,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-strict JSON constant {name} in events file")


def lines_of(path: Path) -> list[str]:
    """The lines of a text file, each checked to be complete (the file ends with a newline)."""
    text = path.read_text(encoding="utf-8")
    if not text:
        return []
    assert text.endswith("\n"), f"{path} ends with a partial line"
    return text[:-1].split("\n")


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file parsed as strict JSON (bare NaN/Infinity raise)."""
    return [json.loads(line, parse_constant=_reject_constant) for line in lines_of(path)]


def read_csv(path: Path) -> list[list[str]]:
    """The rows of a CSV file as read back by the ``csv`` module (header included)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def clock(timestamp: float) -> str:
    """The local ``YYYY-MM-DD HH:MM:SS`` text of a Unix timestamp."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def transcript(events: list[dict[str, Any]]) -> list[str]:
    """The ``exp.log`` lines the given JSONL events should have produced."""
    return [f"{clock(e['timestamp'])} - {e['level']} - {e['message']}" for e in events]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def make_logger(run_dir: Path, **kwargs: Any) -> tuple[ExperimentLogger, io.StringIO]:
    """A logger whose console goes to a StringIO (no colors unless asked)."""
    stream = io.StringIO()
    kwargs.setdefault("color", False)
    logger = ExperimentLogger(run_dir=run_dir, console_stream=stream, **kwargs)
    return logger, stream
