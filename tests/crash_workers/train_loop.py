"""Worker for tests/test_reliability.py: a training loop attacked with kills, signals and threads.

Usage: ``train_loop.py MODE RUN_DIR [options]``. Modes:

- ``train``: log forever, step by step: inside ``stage("epoch", epoch=e)`` and ``stage("train")``
  the message ``step {n}`` and the improving ``train/loss = 1/(n+1)``, then ``val/accuracy =
  n/(n+1)`` in the epoch stage. After each step is logged, ``{n} {time}`` goes to the side file
  ``--side`` with one unbuffered ``os.write`` (it survives SIGKILL), so the test knows what was
  logged before the signal. Prints ``ready`` after ``--ready-after`` seconds. ``--pace S`` sleeps
  S seconds every 10 steps (the background flusher then does the flushing). ``--slow-write S``
  makes every file write take S seconds longer (a slow disk), and ``--flush-every K`` flushes
  from the main thread every K steps. With ``--side-mmap`` the side file is instead one 64-byte
  record in a shared memory map, rewritten each step without a system call (so the loop never
  lets another thread run between its flushes).
- ``baseline``: the same loop without expmate (for the exit status Ctrl-C gives without it).
- ``graceful``: the preemption recipe of docs/reliability.md: a SIGTERM handler installed before
  the logger sets a flag; the loop finishes its step, "saves a checkpoint", closes the logger and
  dies of SIGTERM with the default action (the usual exit status).
- ``threads``: ``--threads`` threads log messages and metrics for ``--seconds`` seconds; prints
  a JSON object with the exceptions raised and the calls each thread made.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

STEPS_PER_EPOCH = 10


def _log_step(logger: Any, step: int) -> None:
    with logger.stage("epoch", epoch=step // STEPS_PER_EPOCH):
        with logger.stage("train"):
            logger.info(f"step {step}")
            logger.log_metric(step=step, split="train", name="loss", value=1.0 / (step + 1))
        logger.log_metric(step=step, split="val", name="accuracy", value=step / (step + 1))


def _slow_writes(seconds: float) -> None:
    from expmate.sinks import AppendFile

    original = AppendFile.write

    def slow(self: AppendFile, lines: list[str]) -> bool:
        time.sleep(seconds)
        return original(self, lines)

    AppendFile.write = slow  # type: ignore[method-assign]


class Side:
    """Where the worker says which step it has logged: appended lines, or one record in a memory
    map (no system call, so the main thread keeps the GIL)."""

    SIZE = 64

    def __init__(self, path: Path, *, mapped: bool) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self.map: mmap.mmap | None = None
        if mapped:
            os.ftruncate(self.fd, self.SIZE)
            self.map = mmap.mmap(self.fd, self.SIZE)

    def logged(self, step: int) -> None:
        record = f"{step} {time.time():.6f}\n".encode()
        if self.map is None:
            os.write(self.fd, record)
        else:
            self.map[: self.SIZE] = record.ljust(self.SIZE, b" ")


def train(args: argparse.Namespace) -> None:
    from expmate import ExperimentLogger

    if args.slow_write:
        _slow_writes(args.slow_write)
    logger = ExperimentLogger(args.run_dir, console_output=False, flush_interval=args.interval)
    side = Side(args.side, mapped=args.side_mmap)
    ready_at = time.monotonic() + args.ready_after
    ready = False
    step = 0
    while True:
        _log_step(logger, step)
        side.logged(step)
        if args.flush_every and step % args.flush_every == 0:
            logger.flush_files()
        if args.pace and step % 10 == 0:
            time.sleep(args.pace)
        if not ready and time.monotonic() >= ready_at:
            print("ready", flush=True)
            ready = True
        step += 1


def graceful(args: argparse.Namespace) -> None:
    from expmate import ExperimentLogger

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())  # before the logger
    logger = ExperimentLogger(args.run_dir, console_output=False, flush_interval=args.interval)
    side = os.open(args.side, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    print("ready", flush=True)
    step = 0
    while not stop.is_set():
        _log_step(logger, step)
        os.write(side, f"{step} {time.time():.6f}\n".encode())
        step += 1
    (args.run_dir / "checkpoint.json").write_text(json.dumps({"next_step": step}))
    logger.info(f"preempted: checkpoint saved, resume at step {step}")
    logger.close()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)


def baseline(args: argparse.Namespace) -> None:
    side = os.open(args.side, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    print("ready", flush=True)
    step = 0
    while True:
        os.write(side, f"{step} {time.time():.6f}\n".encode())
        step += 1


def threads(args: argparse.Namespace) -> None:
    from expmate import ExperimentLogger

    logger = ExperimentLogger(args.run_dir, console_output=False, flush_interval=0.05)
    errors: list[str] = []
    counts = [0] * args.threads
    stop = time.monotonic() + args.seconds

    def work(index: int) -> None:
        n = 0
        try:
            while time.monotonic() < stop:
                with logger.stage("worker", thread=index):
                    logger.info(f"thread {index} call {n}", n=n)
                    logger.log_metric(step=n, split=f"t{index}", name="loss", value=1.0 / (n + 1))
                n += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
            errors.append(f"{type(exc).__name__}: {exc}")
        counts[index] = n

    workers = [threading.Thread(target=work, args=(i,)) for i in range(args.threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    logger.close()
    print(json.dumps({"errors": errors, "counts": counts}), flush=True)


def main() -> int:
    # Ctrl-C as in a terminal even when the tests run in the background (where a shell starts
    # them with SIGINT ignored, and Python then installs no KeyboardInterrupt handler).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "graceful", "baseline", "threads"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--side", type=Path)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--ready-after", type=float, default=0.2)
    parser.add_argument("--pace", type=float, default=0.0)
    parser.add_argument("--slow-write", type=float, default=0.0)
    parser.add_argument("--flush-every", type=int, default=0)
    parser.add_argument("--side-mmap", action="store_true")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.mode == "train":
        train(args)
    elif args.mode == "graceful":
        graceful(args)
    elif args.mode == "baseline":
        baseline(args)
    else:
        threads(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
