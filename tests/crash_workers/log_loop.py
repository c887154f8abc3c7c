"""Worker for tests/test_crash_safety.py: a training-like process that logs and then gets killed.

Usage: ``log_loop.py MODE RUN_DIR [options]``. Every step logs the improving metric
``train/loss = 1/(step+1)`` and the message ``step {step}``. Modes:

- ``loop``: log forever; print ``ready`` once it has logged for ``--ready-after`` seconds, then
  print ``logged {step}`` every ``--report-every`` steps (after that step was logged). With
  ``--pace S`` it sleeps S seconds every 10 steps, so the background flusher does the flushing.
- ``stall``: log ``--steps`` steps, sleep ``--stall`` seconds, print ``stalled``, sleep on.
- ``exit``: a function creates a logger, logs ``--steps`` steps and returns without closing it;
  the process then exits normally.
- ``fork``: log ``--steps`` steps, fork a child that exits with ``os._exit(0)`` (after logging
  ``child`` and calling ``flush_files()`` with ``--child-flushes``), then close in the parent.
- ``term-in-flush``: log ``--steps`` steps, then flush; the flush's first write sends SIGTERM to
  the process itself, so the signal arrives while the main thread is inside that flush.
- ``fork-best``: log step 0, fork; the parent logs step 1 and flushes, then the child flushes.
- ``fork-metric``: log step 0 (not flushed), fork; the child logs a metric at step 100 and
  flushes; the parent logs step 1 and closes.
- ``fork-quiet``: log step 0, fork a child that logs a metric and ends with ``os._exit(0)``
  without flushing (as a data-loader worker does); the parent closes.
- ``fork-busy``: fork while another thread is in the middle of writing a flush; the child logs
  ``child`` and flushes. Exits 0 if the child finished within ``--child-timeout`` seconds.

``--previous-handler MARKER`` installs a SIGTERM handler before the logger is created; it writes
MARKER and ends the process with ``os._exit(7)`` (so nothing but that handler's caller can flush).
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from expmate import ExperimentLogger
from expmate.sinks import AppendFile


def log_step(logger: ExperimentLogger, step: int) -> None:
    logger.log_metric(step=step, split="train", name="loss", value=1.0 / (step + 1))
    logger.info(f"step {step}")


def loop(logger: ExperimentLogger, ready_after: float, report_every: int, pace: float) -> None:
    ready_at = time.monotonic() + ready_after
    ready = False
    step = 0
    while True:
        log_step(logger, step)
        if pace and step % 10 == 0:
            time.sleep(pace)
        if step % report_every == 0:
            if ready:
                print(f"logged {step}", flush=True)
            elif time.monotonic() >= ready_at:
                print("ready", flush=True)
                ready = True
        step += 1


def fork(logger: ExperimentLogger, steps: int, child_flushes: bool) -> int:
    for step in range(steps):
        log_step(logger, step)
    pid = os.fork()
    if pid == 0:
        if child_flushes:
            logger.info("child")
            logger.flush_files()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    logger.close()
    return 0 if os.waitstatus_to_exitcode(status) == 0 else 1


def fork_best(logger: ExperimentLogger) -> int:
    log_step(logger, 0)
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(go_read, 1)  # wait until the parent has written a newer best.json
        logger.flush_files()
        os._exit(0)
    log_step(logger, 1)
    logger.flush_files()
    os.write(go_write, b"x")
    _, status = os.waitpid(pid, 0)
    logger.close()
    return 0 if os.waitstatus_to_exitcode(status) == 0 else 1


def fork_metric(logger: ExperimentLogger) -> int:
    log_step(logger, 0)
    pid = os.fork()
    if pid == 0:
        logger.log_metric(step=100, split="train", name="loss", value=0.01)
        logger.flush_files()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    log_step(logger, 1)
    logger.close()
    return 0 if os.waitstatus_to_exitcode(status) == 0 else 1


def fork_quiet(logger: ExperimentLogger) -> int:
    log_step(logger, 0)
    pid = os.fork()
    if pid == 0:
        logger.log_metric(step=100, split="train", name="loss", value=0.01)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    logger.close()
    return 0 if os.waitstatus_to_exitcode(status) == 0 else 1


def fork_busy(logger: ExperimentLogger, steps: int, child_timeout: float) -> int:
    for step in range(steps):
        log_step(logger, step)
    writing = threading.Event()
    release = threading.Event()
    original = AppendFile.write

    def slow_write(self: AppendFile, lines: list[str]) -> bool:
        writing.set()
        release.wait()
        return original(self, lines)

    AppendFile.write = slow_write  # type: ignore[method-assign]
    flusher = threading.Thread(target=logger.flush_files)
    flusher.start()
    writing.wait()
    pid = os.fork()
    if pid == 0:
        AppendFile.write = original  # type: ignore[method-assign]
        logger.info("child")
        logger.flush_files()
        os._exit(0)
    deadline = time.monotonic() + child_timeout
    done, status = os.waitpid(pid, os.WNOHANG)
    while not done and time.monotonic() < deadline:
        time.sleep(0.01)
        done, status = os.waitpid(pid, os.WNOHANG)
    if not done:
        print("child hung", flush=True)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    release.set()
    flusher.join()
    AppendFile.write = original  # type: ignore[method-assign]
    logger.close()
    return 0 if done and os.waitstatus_to_exitcode(status) == 0 else 1


def term_in_flush(logger: ExperimentLogger, steps: int) -> int:
    for step in range(steps):
        log_step(logger, step)
    original = AppendFile.write

    def signalling_write(self: AppendFile, lines: list[str]) -> bool:
        AppendFile.write = original  # type: ignore[method-assign]
        os.kill(os.getpid(), signal.SIGTERM)
        return original(self, lines)

    AppendFile.write = signalling_write  # type: ignore[method-assign]
    logger.flush()
    time.sleep(5)  # SIGTERM's default action ends the process before this
    return 3


def log_without_close(run_dir: Path, flush_interval: float, steps: int) -> None:
    logger = ExperimentLogger(run_dir, console_output=False, flush_interval=flush_interval)
    for step in range(steps):
        log_step(logger, step)


def install_previous_handler(marker: Path) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        marker.write_text("previous handler ran\n", encoding="utf-8")
        os._exit(7)

    signal.signal(signal.SIGTERM, handler)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "mode",
        choices=[
            "exit",
            "loop",
            "stall",
            "fork",
            "fork-best",
            "fork-metric",
            "fork-quiet",
            "fork-busy",
            "term-in-flush",
        ],
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--flush-interval", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--ready-after", type=float, default=0.2)
    parser.add_argument("--report-every", type=int, default=100)
    parser.add_argument("--pace", type=float, default=0.0)
    parser.add_argument("--stall", type=float, default=0.0)
    parser.add_argument("--child-flushes", action="store_true")
    parser.add_argument("--child-timeout", type=float, default=3.0)
    parser.add_argument("--previous-handler", type=Path)
    args = parser.parse_args()

    if args.mode == "exit":
        log_without_close(args.run_dir, args.flush_interval, args.steps)
        gc.collect()
        return 0
    if args.previous_handler is not None:
        install_previous_handler(args.previous_handler)
    logger = ExperimentLogger(
        args.run_dir, console_output=False, flush_interval=args.flush_interval
    )
    if args.mode == "loop":
        loop(logger, args.ready_after, args.report_every, args.pace)
    elif args.mode == "fork":
        return fork(logger, args.steps, args.child_flushes)
    elif args.mode == "term-in-flush":
        return term_in_flush(logger, args.steps)
    elif args.mode == "fork-best":
        return fork_best(logger)
    elif args.mode == "fork-metric":
        return fork_metric(logger)
    elif args.mode == "fork-quiet":
        return fork_quiet(logger)
    elif args.mode == "fork-busy":
        return fork_busy(logger, args.steps, args.child_timeout)
    else:
        for step in range(args.steps):
            log_step(logger, step)
        time.sleep(args.stall)
        print("stalled", flush=True)
        time.sleep(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
