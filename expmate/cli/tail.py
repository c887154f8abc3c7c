"""``expmate tail RUN [-f] [--rank R] [-n N]``: the human logs of every rank, merged by time.

Each line is prefixed with its rank (``[r1] 2025-01-23 14:30:22 - INFO - ...``) unless one rank
is asked for. Ranks interleave in the order they logged: the human logs have whole seconds, the
rest of each message's time comes from its event in the rank's events file. ``-f`` follows a live run: new lines as they are flushed, ranks whose log appears
later, and a last line still being written shown once it is whole. Ctrl-C ends ``-f`` with exit
status 130, as for ``tail -f`` in a shell.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from expmate.cli import EXIT_NO_DATA, CliError
from expmate.log_merge import RankLog, Record, log_name, merge_records, rank_logs

POLL_SECONDS = 0.25


def register(subparsers: Any) -> None:
    """Add ``expmate tail``."""
    parser = subparsers.add_parser(
        "tail",
        help="show the human logs of every rank, merged by time; -f to follow a live run",
        description=(
            "Show the last lines of a run's exp.log and exp_rank{r}.log files, merged by time, "
            "each prefixed with its rank. With -f, keep printing lines as the run writes them "
            "(Ctrl-C ends it, exit status 130)."
        ),
    )
    parser.add_argument("run", metavar="RUN", help="the run directory")
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines as they are written"
    )
    parser.add_argument(
        "--rank", type=_rank, metavar="R", help="only rank R's log, without the rank prefix"
    )
    parser.add_argument(
        "-n",
        "--lines",
        type=_count,
        default=10,
        metavar="N",
        help="how many of the last messages to show first (default 10; 'all' for every one)",
    )
    parser.set_defaults(handler=tail)


def _rank(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a rank is a number 0 or more, not {text!r}")
    return int(text)


def _count(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of lines or 'all', not {text!r}")
    return int(text)


def tail(args: argparse.Namespace) -> int:
    """The ``expmate tail`` handler."""
    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise CliError(f"no run directory at {args.run!r}", EXIT_NO_DATA)
    files = _open_logs(run_dir, args.rank, follow=args.follow, last=args.lines)
    prefixed = args.rank is None
    if args.lines is None:
        _write(merge_records([log.stream() for log in files.values()]), prefixed=prefixed)
    else:
        first = list(merge_records([log.read_new() for log in files.values()]))
        _write(first[len(first) - args.lines :] if args.lines else [], prefixed=prefixed)
    while args.follow:
        time.sleep(POLL_SECONDS)
        if prefixed:
            for rank in rank_logs(run_dir):
                if rank not in files:
                    files[rank] = RankLog(run_dir, rank)
        _write(merge_records([log.read_new() for log in files.values()]), prefixed=prefixed)
    return 0


def _open_logs(
    run_dir: Path, rank: int | None, *, follow: bool, last: int | None
) -> dict[int, RankLog]:
    """The logs to read, each positioned before its last ``last`` messages.

    Raises:
        CliError: no log (or not rank ``rank``'s) and not following.
    """
    logs = rank_logs(run_dir)
    if rank is not None:
        if rank not in logs and not follow:
            present = ", ".join(map(str, logs)) or "none"
            raise CliError(f"{run_dir} has no {log_name(rank)} (ranks with a log: {present})")
        return {rank: RankLog(run_dir, rank, last)}
    elif not logs and not follow:
        raise CliError(
            f"{run_dir} has no exp.log (nothing logged yet, or the run logs to a log_handler)"
        )
    return {r: RankLog(run_dir, r, last) for r in logs}


def _write(records: Iterable[Record], *, prefixed: bool) -> None:
    out = sys.stdout
    for record in records:
        prefix = f"[r{record.rank}] " if prefixed else ""
        for line in record.lines:
            out.write(f"{prefix}{line}\n")
    out.flush()
