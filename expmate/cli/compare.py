"""``expmate compare RUN...``: best and last metrics side by side, and the config keys that differ."""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from typing import Any

from expmate.cli import CliError
from expmate.cli import _format as fmt
from expmate.cli._records import metric_columns, mode_arrow, record, sort_records
from expmate.cli._select import add_runs_argument, select_runs

# Config keys that name the run rather than describe it (``expmate sweep`` sets both).
_NOT_COMPARED = ("run_id", "run_dir")
_MISSING = object()


def register(subparsers: Any) -> None:
    """Add ``expmate compare``."""
    parser = subparsers.add_parser(
        "compare",
        help="runs side by side: best and last metrics, config keys that differ",
        description="Compare runs: one row per run with the config keys whose values differ "
        "between them and the best and last value of each metric.",
    )
    add_runs_argument(parser)
    parser.add_argument(
        "--sort",
        metavar="KEY",
        help="rank by a metric's best value (val/loss), or by start, id, status, duration, steps",
    )
    parser.add_argument(
        "-m",
        "--metric",
        action="append",
        metavar="SPLIT/NAME",
        help="metrics to compare (default: all)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--csv", metavar="FILE", help="also write the table to FILE as CSV")
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """The flattened config keys whose value is not the same in every run (missing counts)."""
    keys: dict[str, None] = {}
    for config in configs:
        keys.update(dict.fromkeys(config))
    out = []
    for key in keys:
        if key in _NOT_COMPARED:
            continue
        values = [config.get(key, _MISSING) for config in configs]
        if any(v != values[0] or type(v) is not type(values[0]) for v in values[1:]):
            out.append(key)
    return out


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def comparison(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str], list[Any]]:
    """The records, the differing config keys and the metric columns."""
    now = time.time()
    records = [record(found, now, config=True) for found in select_runs(args.runs)]
    if args.sort:
        sort_records(records, args.sort)
    keys = differing_keys([r["config"] for r in records])
    return records, keys, metric_columns(records, args.metric, tracked_only=False)


def flat_rows(
    records: list[dict[str, Any]], keys: list[str], columns: list[Any]
) -> list[dict[str, Any]]:
    """One flat dict per run, full precision, for ``--csv`` and ``--json``."""
    rows = []
    for rec in records:
        row: dict[str, Any] = {"id": rec["id"], "path": rec["path"], "status": rec["status"]}
        for key in keys:
            row[key] = rec["config"].get(key)
        for metric, _ in columns:
            entry = rec["metrics"].get(metric) or {}
            for part in ("best", "best_step", "last", "last_step"):
                row[f"{metric}.{part}"] = _finite_or_none(entry.get(part))
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    """Print the comparison (and write the CSV)."""
    records, keys, columns = comparison(args)
    if args.json:
        print(json.dumps(flat_rows(records, keys, columns), indent=2, default=str))
        return 0
    _print_table(records, keys, columns)
    if args.csv:
        rows = flat_rows(records, keys, columns)
        try:
            with open(args.csv, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        except OSError as exc:
            raise CliError(f"cannot write {args.csv!r}: {exc.strerror or exc}") from None
    return 0


def _print_table(records: list[dict[str, Any]], keys: list[str], columns: list[Any]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("run")
    table.add_column("status")
    for key in keys:
        table.add_column(key, style="cyan")
    for metric, mode in columns:
        table.add_column(f"{metric}{mode_arrow(mode)} best", justify="right")
        table.add_column(f"{metric} last", justify="right")
    for rec in records:
        cells = [rec["id"], fmt.status_text(rec["status"])]
        cells += [fmt.number(rec["config"].get(key)) for key in keys]
        for metric, _ in columns:
            entry = rec["metrics"].get(metric) or {}
            cells.append(fmt.at_step(entry.get("best"), entry.get("best_step")))
            cells.append(fmt.at_step(entry.get("last"), entry.get("last_step")))
        table.add_row(*cells)
    fmt.console().print(table)
