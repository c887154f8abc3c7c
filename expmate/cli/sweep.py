"""``expmate sweep "python train.py {overrides}" -p training.lr=0.001,0.01``: run a grid of configs.

Each run of the grid is a child process with overrides of its own, ``run_id=ID`` and
``+run_dir=SWEEP_DIR/ID`` (``parse_config`` understands both; the script opens its logger on
``config.run_dir``). ``SWEEP_DIR/sweep.json`` records every run's command, status, exit code and
times, replaced atomically whenever a run starts or ends. A failing run is recorded and the sweep
goes on; Ctrl-C (or SIGTERM) is forwarded to every running child's process group, then, after a
grace period or a second Ctrl-C, the children are killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from expmate.cli import EXIT_USAGE, CliError
from expmate.run_end import signal_name
from expmate.sinks.base import replace_file, report_failure
from expmate.sweep_grid import (
    SWEEP_INDEX,
    PlannedRun,
    build_argv,
    check_template,
    parse_parameter,
    plan_runs,
)

POLL_SECONDS = 0.05
GRACE_SECONDS = 10.0  # after a forwarded Ctrl-C, how long children may take to stop


def register(subparsers: Any) -> None:
    """Add ``expmate sweep``."""
    parser = subparsers.add_parser(
        "sweep",
        help="run a command once per combination of config overrides",
        description=(
            "Run COMMAND once per combination of the -p values (the first -p varies slowest), "
            "each run with run_id=ID and +run_dir=SWEEP_DIR/ID among its overrides, and record "
            "them in SWEEP_DIR/sweep.json. Exit status: 0 when every run finished, 1 when one "
            "failed, 130 after Ctrl-C (143 after SIGTERM)."
        ),
    )
    parser.add_argument(
        "template",
        metavar="COMMAND",
        help='the command, split like a shell would, with an {overrides} word: "python train.py '
        '{overrides}"; {run_id}, {run_dir} and {sweep_dir} are filled in too',
    )
    parser.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a config key and its values, comma-separated (commas inside [...] or quotes stay)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="how many runs at once (default 1)",
    )
    parser.add_argument(
        "-o",
        "--sweep-dir",
        metavar="DIR",
        help="where the runs and sweep.json go (default runs/sweep_<time>_<random>)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print each run's command line and start nothing",
    )
    parser.set_defaults(handler=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    """The ``expmate sweep`` handler."""
    if args.parallel < 1:
        raise CliError(f"--parallel must be at least 1, not {args.parallel}", EXIT_USAGE)
    try:
        words = check_template(args.template)
        parameters = [parse_parameter(text) for text in args.params]
        sweep_dir = args.sweep_dir or default_sweep_dir()
        runs = plan_runs(parameters, sweep_dir=sweep_dir)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    argvs = [build_argv(words, run, sweep_dir=sweep_dir) for run in runs]
    if args.dry_run:
        for argv in argvs:
            print(shlex.join(argv))
        return 0
    sweep = SweepIndex.create(
        Path(sweep_dir), args.template, parameters, runs, argvs, args.parallel
    )
    return Scheduler(sweep, args.parallel).run()


def default_sweep_dir() -> str:
    """``runs/sweep_20250123_143022_a1b2c3``: time-sorted and unique."""
    from expmate.run_id import new_run_id

    return str(Path("runs") / f"sweep_{new_run_id()}")


class SweepIndex:
    """``sweep.json``: the sweep's record, replaced atomically at every change."""

    def __init__(self, path: Path, record: dict[str, Any]) -> None:
        self.path = path
        self.record = record

    @classmethod
    def create(
        cls,
        sweep_dir: Path,
        command: str,
        parameters: list[tuple[str, list[str]]],
        runs: list[PlannedRun],
        argvs: list[list[str]],
        parallel: int,
    ) -> SweepIndex:
        """A new sweep directory with its first ``sweep.json`` (every run ``pending``).

        Raises:
            CliError: the directory already holds a sweep, or cannot be written.
        """
        path = sweep_dir / SWEEP_INDEX
        if path.exists():
            raise CliError(f"{sweep_dir} already holds a sweep ({path}); choose another -o DIR", 2)
        record = {
            "format": 1,
            "command": command,
            "parameters": dict(parameters),
            "sweep_dir": str(sweep_dir),
            "parallel": parallel,
            "status": "running",
            "start_time": time.time(),
            "end_time": None,
            "runs": [
                {
                    "index": run.index,
                    "run_id": run.run_id,
                    "run_dir": run.run_dir,
                    "overrides": run.overrides,
                    "command": argv,
                    "status": "pending",
                    "exit_code": None,
                    "start_time": None,
                    "end_time": None,
                }
                for run, argv in zip(runs, argvs, strict=True)
            ],
        }
        index = cls(path, record)
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            index._write()
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc}") from None
        return index

    @property
    def runs(self) -> list[dict[str, Any]]:
        """The per-run entries, in grid order."""
        runs: list[dict[str, Any]] = self.record["runs"]
        return runs

    def _write(self) -> None:
        replace_file(self.path, json.dumps(self.record, indent=2, allow_nan=False) + "\n")

    def save(self) -> None:
        """Replace ``sweep.json``; a failure is reported once and the sweep goes on."""
        try:
            self._write()
        except OSError as exc:
            report_failure(f"writing {self.path}", exc)


@dataclass
class Child:
    """A running child: its entry in ``sweep.json``, its process, the thread relaying its output."""

    entry: dict[str, Any]
    proc: subprocess.Popen[bytes]
    relay: threading.Thread | None = None
    last_line: list[str] = field(default_factory=lambda: [""])


class StopRequest:
    """A SIGINT/SIGTERM handler: the first signal asks to stop, a second one to kill at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.force = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        else:
            self.force = True


class Scheduler:
    """Runs a sweep's children, at most ``parallel`` at once, and records each one's end."""

    def __init__(self, sweep: SweepIndex, parallel: int) -> None:
        self.sweep = sweep
        self.parallel = parallel
        self.stop = StopRequest()
        self.output_lock = threading.Lock()

    def run(self) -> int:
        """Run every pending run; returns the sweep's exit status: 0 when every run finished, 1
        when one failed, 128 + the signal number when interrupted (130 for Ctrl-C)."""
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._conclude()

    def _loop(self) -> None:
        pending = deque(self.sweep.runs)
        running: list[Child] = []
        while (pending or running) and self.stop.signum is None:
            while pending and len(running) < self.parallel and self.stop.signum is None:
                child = self._start(pending.popleft())
                if child is not None:
                    running.append(child)
            time.sleep(POLL_SECONDS)
            for child in [c for c in running if c.proc.poll() is not None]:
                running.remove(child)
                self._finish(child)
        if self.stop.signum is not None:
            self._interrupt(running, self.stop.signum)
            for entry in pending:
                entry["status"] = "cancelled"

    def _start(self, entry: dict[str, Any]) -> Child | None:
        env = dict(os.environ)
        env.update(
            EXPMATE_SWEEP_DIR=self.sweep.record["sweep_dir"],
            EXPMATE_RUN_ID=entry["run_id"],
            EXPMATE_RUN_DIR=entry["run_dir"],
        )
        env.setdefault("PYTHONUNBUFFERED", "1")  # the child's output arrives line by line
        entry.update(status="running", start_time=time.time())
        position = f"{entry['index'] + 1}/{len(self.sweep.runs)}"
        _note(f"{entry['run_id']} ({position}) started: {shlex.join(entry['command'])}")
        try:
            proc = subprocess.Popen(
                entry["command"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: Ctrl-C reaches it only through us
            )
        except OSError as exc:
            entry.update(status="failed", end_time=time.time(), error=str(exc))
            _note(f"{entry['run_id']} failed to start: {exc}")
            self.sweep.save()
            return None
        child = Child(entry, proc)
        child.relay = threading.Thread(
            target=self._relay, args=(child,), name=f"sweep-{entry['run_id']}", daemon=True
        )
        child.relay.start()
        self.sweep.save()
        return child

    def _relay(self, child: Child) -> None:
        """Copy the child's output to ours, each line prefixed with its run id."""
        stream: IO[bytes] | None = child.proc.stdout
        if stream is None:
            return
        prefix = f"[{child.entry['run_id']}] "
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.strip():
                child.last_line[0] = line.strip()
            with self.output_lock, contextlib.suppress(OSError, ValueError):
                sys.stdout.write(prefix + line + "\n")
                sys.stdout.flush()
        stream.close()

    def _finish(self, child: Child, *, interrupted_by: int | None = None) -> None:
        if child.relay is not None:
            child.relay.join()
        code = child.proc.returncode
        entry = child.entry
        entry.update(exit_code=code, end_time=time.time())
        took = f"{entry['end_time'] - entry['start_time']:.1f} s"
        if interrupted_by is not None:
            entry.update(status="interrupted", signal=signal_name(interrupted_by))
            _note(f"{entry['run_id']} interrupted ({_describe(code)}, {took})")
        elif code == 0:
            entry["status"] = "finished"
            _note(f"{entry['run_id']} finished ({took})")
            if not Path(entry["run_dir"]).is_dir():
                _note(
                    f"{entry['run_id']} wrote no run directory at {entry['run_dir']}: open the "
                    "logger with ExperimentLogger(run_dir=config.run_dir)"
                )
        else:
            entry.update(status="failed", last_line=child.last_line[0])
            if code < 0:
                entry["signal"] = signal_name(-code)
            _note(f"{entry['run_id']} failed ({_describe(code)}, {took}): {child.last_line[0]}")
        self.sweep.save()

    def _interrupt(self, running: list[Child], signum: int) -> None:
        """Forward ``signum`` to every child's process group; kill those still alive later."""
        for child in [c for c in running if c.proc.poll() is not None]:
            running.remove(child)
            self._finish(child)
        if running:
            _note(f"{signal_name(signum)}: stopping {len(running)} running child(ren)")
        for child in running:
            _signal_group(child.proc.pid, signum)
        deadline = time.monotonic() + GRACE_SECONDS
        while (
            any(c.proc.poll() is None for c in running)
            and not self.stop.force
            and time.monotonic() < deadline
        ):
            time.sleep(POLL_SECONDS)
        for child in running:
            if child.proc.poll() is None:
                _kill_tree(child.proc.pid)
            child.proc.wait()
            self._finish(child, interrupted_by=signum)

    def _conclude(self) -> int:
        record = self.sweep.record
        statuses = [entry["status"] for entry in self.sweep.runs]
        failed = [entry["run_id"] for entry in self.sweep.runs if entry["status"] == "failed"]
        if self.stop.signum is not None:
            record["status"], code = "interrupted", 128 + self.stop.signum
        elif failed:
            record["status"], code = "failed", 1
        else:
            record["status"], code = "finished", 0
        record["end_time"] = time.time()
        self.sweep.save()
        counts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
        _note(f"{len(statuses)} runs in {record['sweep_dir']}: {counts}")
        if failed:
            _note("failed: " + ", ".join(failed))
        _note(f"compare them: expmate compare {record['sweep_dir']}/*")
        return code


def _note(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"sweep: {message}", file=sys.stderr, flush=True)


def _describe(code: int) -> str:
    return f"killed by {signal_name(-code)}" if code < 0 else f"exit {code}"


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _kill_tree(pid: int) -> None:
    """SIGKILL the child's process group and every descendant psutil can find (torchrun starts
    its workers in sessions of their own, out of reach of the group)."""
    victims: list[int] = []
    try:
        import psutil

        with contextlib.suppress(psutil.Error):
            victims = [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    _signal_group(pid, signal.SIGKILL)
    for victim in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGKILL)
