"""``expmate ls [DIR...]``: one line per run: id, status, start, duration, steps, best metrics.

Reads each run's ``summary.json`` only (the files themselves for runs written before it
existed), so listing a thousand runs takes a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from expmate.cli import EXIT_NO_DATA, EXIT_USAGE, CliError
from expmate.cli import _format as fmt
from expmate.cli._records import metric_columns, mode_arrow, record, sort_records
from expmate.cli._select import select_runs

_RUN_FILTERS = ("id", "status")


def register(subparsers: Any) -> None:
    """Add ``expmate ls``."""
    parser = subparsers.add_parser(
        "ls",
        help="list runs: status, start, duration, steps, best metrics",
        description="List the runs under each DIR (default: runs/), newest first.",
    )
    parser.add_argument("dirs", nargs="*", default=["runs"], metavar="DIR")
    parser.add_argument(
        "--sort",
        metavar="KEY",
        default="start",
        help="start (default, newest first), id, status, duration, steps, or a metric "
        "(val/loss: best value first, in the metric's own direction)",
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose config key (training.lr=0.01), status or id has this value; "
        "repeat to require several",
    )
    parser.add_argument("--limit", type=_positive, metavar="N", help="show the first N runs")
    parser.add_argument(
        "-m",
        "--metric",
        action="append",
        metavar="SPLIT/NAME",
        help="metric columns to show (default: every metric with a best value)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _parse_filters(texts: list[str]) -> list[tuple[str, str]]:
    out = []
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise CliError(f"--filter takes KEY=VALUE (training.lr=0.01), not {text!r}", EXIT_USAGE)
        out.append((key.removeprefix("config."), value))
    return out


def matches(value: Any, wanted: str) -> bool:
    """Whether a config value equals the text given on the command line (``0.01`` == ``1e-2``)."""
    if value is None:
        return wanted.lower() in ("", "null", "none", "~")
    if isinstance(value, bool):
        return wanted.lower() in (
            ("true", "yes", "on", "1") if value else ("false", "no", "off", "0")
        )
    if isinstance(value, (int, float)):
        try:
            return float(wanted) == float(value)
        except ValueError:
            return False
    return str(value) == wanted


def _keep(rec: dict[str, Any], filters: list[tuple[str, str]]) -> bool:
    for key, wanted in filters:
        if key in _RUN_FILTERS:
            if str(rec[key]) != wanted:
                return False
        elif key not in rec["config"] or not matches(rec["config"][key], wanted):
            return False
    return True


def run(args: argparse.Namespace) -> int:
    """List the runs; exit 1 when there are none (or some could not be read)."""
    from expmate.runs import RunError

    filters = _parse_filters(args.filter)
    runs = select_runs(args.dirs)
    now = time.time()
    need_config = any(key not in _RUN_FILTERS for key, _ in filters)
    records, unreadable = [], []
    for found in runs:
        try:
            records.append(record(found, now, config=need_config))
        except RunError as exc:
            unreadable.append(f"expmate ls: skipped {str(found.path)!r}: {exc}")
    records = [r for r in records if _keep(r, filters)]
    if not records and not unreadable:
        asked = " ".join(f"--filter {f}" for f in args.filter)
        raise CliError(f"no run matches {asked}" if asked else "no runs", EXIT_NO_DATA)
    sort_records(records, args.sort)
    if args.limit is not None:
        records = records[: args.limit]
    columns = metric_columns(records, args.metric, tracked_only=True)
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    else:
        _print_table(records, columns)
    for line in unreadable:
        print(line, file=sys.stderr)
    return EXIT_NO_DATA if unreadable else 0


def _print_table(records: list[dict[str, Any]], columns: list[tuple[str, str | None]]) -> None:
    header = ["run", "status", "start", "duration", "steps"]
    header += [key + mode_arrow(mode) for key, mode in columns]
    rows = []
    for r in records:
        cells = [
            r["id"],
            r["status"],
            fmt.clock(r["start_time"]),
            fmt.duration(r["duration"]),
            "-" if r["last_step"] is None else str(r["last_step"]),
        ]
        for key, _ in columns:
            entry = r["metrics"].get(key) or {}
            cells.append(fmt.at_step(entry.get("best"), entry.get("best_step")))
        rows.append(cells)
    right = frozenset(range(3, len(header)))
    fmt.print_rows(fmt.console(), header, rows, right=right, styles={1: fmt.STATUS_STYLES})
