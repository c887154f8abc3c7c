"""Worker for tests/test_attempts.py: a process that holds a run directory, or ends in a given way.

Usage: ``attempt_worker.py MODE RUN_DIR``. Modes:

- ``hold``: open a logger, print ``ready``, then sleep until killed.
- ``raise``: open a logger and let a ``ValueError("bad lr")`` end the script.
- ``sigterm``: open a logger and send SIGTERM to itself (the default action ends it).
- ``exit``: open a logger and return without closing it (exit status 0).
- ``slow-exit``: open a logger, log a line and return; the exit-time flush is slow (each write
  waits 1 s) and prints ``exiting`` when it starts writing (the test sends SIGTERM then).
- ``fork``: open a logger, fork a child that stays alive; the parent closes its logger, opens a
  new one on the same directory while the child lives (it must get the lock), closes it, lets
  the child end with a normal interpreter exit, and prints the child's exit status.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from expmate import ExperimentLogger


def fork(run_dir: Path) -> int:
    logger = ExperimentLogger(run_dir, console_output=False)
    logger.info("parent")
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(ready_w, b"x")
        os.read(done_r, 1)
        sys.exit(0)  # a normal exit: atexit runs in the child
    os.read(ready_r, 1)
    logger.close()
    second = ExperimentLogger(run_dir, console_output=False)
    second.info("second logger while the child lives")
    second.close()
    os.write(done_w, b"x")
    _, status = os.waitpid(pid, 0)
    print(f"child exit {os.waitstatus_to_exitcode(status)}", flush=True)
    return 0


def slow_exit(run_dir: Path) -> int:
    from expmate.sinks import AppendFile

    logger = ExperimentLogger(run_dir, console_output=False, flush_interval=1000)
    logger.info("before exit")
    original = AppendFile.write

    def slow(self: AppendFile, lines: list[str]) -> bool:
        print("exiting", flush=True)
        time.sleep(1)
        return original(self, lines)

    AppendFile.write = slow  # type: ignore[method-assign]
    return 0


def main() -> int:
    mode, run_dir = sys.argv[1], Path(sys.argv[2])
    if mode == "fork":
        return fork(run_dir)
    if mode == "slow-exit":
        return slow_exit(run_dir)
    logger = ExperimentLogger(run_dir, console_output=False)
    logger.info(mode)
    if mode == "hold":
        print("ready", flush=True)
        while True:
            time.sleep(1)
    if mode == "raise":
        raise ValueError("bad lr")
    if mode == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
