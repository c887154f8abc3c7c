"""``expmate show RUN``: everything about one run on one screen.

Id, status, times, ranks and hosts, config, last and best of every metric, the stage tree with
the time spent in each stage, the slowest timers with the slowest rank and the spread across
ranks, warnings and errors, checkpoint events.
"""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING, Any

from expmate.cli import EXIT_NO_DATA, CliError
from expmate.cli import _format as fmt
from expmate.cli._select import select_run

if TYPE_CHECKING:
    from expmate.runs import Run

_LAST_PROBLEMS = 5
_TIMERS = 10


def register(subparsers: Any) -> None:
    """Add ``expmate show``."""
    parser = subparsers.add_parser(
        "show",
        help="one run: status, config, metrics, stages, timers, warnings, checkpoints",
        description="Show one run: status and times, ranks and hosts, config, last and best "
        "of every metric, time per stage, slowest timers across ranks, warnings and errors.",
    )
    parser.add_argument("run", metavar="RUN", help="a run directory")
    parser.add_argument(
        "--timers", type=int, default=_TIMERS, metavar="N", help="slowest timers to list"
    )
    parser.add_argument(
        "--problems",
        type=int,
        default=_LAST_PROBLEMS,
        metavar="N",
        help="latest warnings and errors to list",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the report of one run."""
    from expmate.event_stats import checkpoint_events, problems, stage_totals, timer_stats

    found = select_run(args.run)
    _ = found.best, found.provenance, found.config  # a corrupt file is reported before output
    events = found.events
    metrics = found.metric_summary
    if not events and not metrics:
        raise CliError(f"run {found.id!r} is empty: no events and no metrics yet", EXIT_NO_DATA)
    out = fmt.console()
    out.print(_header(found))
    if found.config:
        out.print(_section("config"))
        out.print(_config(found.config))
    if metrics:
        out.print(_section("metrics"))
        out.print(_metrics(metrics))
    stages = stage_totals(events)
    if stages:
        out.print(_section("stages"))
        out.print(_stages(stages))
    timers = timer_stats(events)
    if timers:
        out.print(_section(f"timers (slowest {min(args.timers, len(timers))} of {len(timers)})"))
        out.print(_timers(timers[: args.timers]))
    counts, found_problems = problems(events)
    out.print(_section(_problem_title(counts)))
    if found_problems and args.problems > 0:
        out.print(_events(found_problems[-args.problems :]))
    checkpoints = checkpoint_events(events)
    if checkpoints:
        out.print(_section(f"checkpoints ({len(checkpoints)} events)"))
        out.print(_events(checkpoints, checkpoint=True))
    return 0


def _section(title: str) -> Any:
    from rich.text import Text

    return Text("\n" + title, style="bold")


def _grid() -> Any:
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    return grid


def _table(*columns: str, right: tuple[str, ...] = ()) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    return table


def _header(run: Run) -> Any:
    from rich.text import Text

    grid = _grid()
    grid.add_row("run", Text(run.id, style="bold"))
    grid.add_row("path", str(run.path))
    status = fmt.status_text(run.status)
    summary = run.summary or {}
    if summary.get("exception"):
        status.append(f"  {summary['exception']}: {summary.get('message', '')}")
    elif summary.get("signal"):
        status.append(f"  ({summary['signal']})")
    grid.add_row("status", status)
    grid.add_row("start", fmt.clock_seconds(run.start_time))
    ended = summary.get("end_time") is not None or summary.get("status") not in ("running", None)
    grid.add_row("end" if ended else "last seen", fmt.clock_seconds(run.end_time))
    grid.add_row("duration", fmt.duration(run.duration))
    grid.add_row("steps", "-" if run.last_step is None else str(run.last_step))
    grid.add_row("ranks", _ranks(run))
    provenance = run.provenance or {}
    command = provenance.get("command")
    if isinstance(command, list) and command:
        grid.add_row("command", shlex.join(str(c) for c in command))
    git = provenance.get("git")
    if isinstance(git, dict) and isinstance(git.get("commit"), str):
        where = ", ".join(
            part
            for part in (git.get("branch"), "dirty: see git.diff" if git.get("dirty") else None)
            if isinstance(part, str)
        )
        grid.add_row("git", git["commit"][:12] + (f" ({where})" if where else ""))
    return grid


def _ranks(run: Run) -> str:
    """``2 (ranks 0-1 on node-a)`` from run.json's ranks, else the ranks that left files."""
    provenance = run.provenance or {}
    ranks = provenance.get("ranks")
    world = run.world_size
    if isinstance(ranks, list) and ranks:
        hosts: dict[str, list[int]] = {}
        for entry in ranks:
            if isinstance(entry, dict) and isinstance(entry.get("rank"), int):
                hosts.setdefault(str(entry.get("host", "?")), []).append(entry["rank"])
        where = "; ".join(f"{_span(sorted(r))} on {host}" for host, r in hosts.items())
        return f"{world} ({where})"
    return f"{world} (files of ranks {_span(run.ranks)})"


def _span(ranks: list[int]) -> str:
    """``0-3, 6`` for [0, 1, 2, 3, 6]."""
    parts = []
    i = 0
    while i < len(ranks):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] == ranks[j] + 1:
            j += 1
        parts.append(str(ranks[i]) if i == j else f"{ranks[i]}-{ranks[j]}")
        i = j + 1
    return ", ".join(parts)


def _config(config: dict[str, Any]) -> Any:
    from expmate.runs import flatten_config

    grid = _grid()
    for key, value in flatten_config(config).items():
        grid.add_row(key, str(value))
    return grid


def _metrics(metrics: dict[str, dict[str, Any]]) -> Any:
    table = _table("metric", "last", "best", "mode", right=("last", "best"))
    for key, entry in metrics.items():
        table.add_row(
            key,
            fmt.at_step(entry["last"], entry["last_step"]),
            fmt.at_step(entry["best"], entry["best_step"]),
            entry["mode"] or "-",
        )
    return table


def _stages(stages: list[Any]) -> Any:
    many = any(len(s.totals) > 1 for s in stages)
    columns = ["stage", "count", "total", "mean"] + (["slowest rank"] if many else [])
    table = _table(*columns, right=("count", "total", "mean", "slowest rank"))
    for stage in stages:
        name = "  " * stage.depth + stage.path.rsplit("/", 1)[-1]
        if stage.failed:
            name += f" ({stage.failed} failed)"
        row = [name, str(stage.count), fmt.duration(stage.total)]
        row.append(fmt.duration(stage.total / stage.count))
        if many:
            slow = stage.slowest_rank
            row.append(f"{slow} ({fmt.duration(stage.totals[slow])})")
        table.add_row(*row)
    return table


def _timers(timers: list[Any]) -> Any:
    table = _table(
        "timer",
        "count",
        "total",
        "mean",
        "longest",
        "slowest rank",
        "max/min across ranks",
        right=("count", "total", "mean", "longest", "max/min across ranks"),
    )
    for stat in timers:
        slow = stat.slowest_rank
        spread = stat.spread
        table.add_row(
            stat.name,
            str(stat.count),
            fmt.duration(stat.total),
            fmt.duration(stat.total / stat.count),
            fmt.duration(stat.longest[slow]),
            str(slow),
            "-" if spread is None else f"{spread:.2f}x",
        )
    return table


def _problem_title(counts: dict[str, int]) -> str:
    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    errors = counts["ERROR"] + counts["CRITICAL"]
    return f"warnings and errors: {plural(counts['WARNING'], 'warning')}, {plural(errors, 'error')}"


def _events(events: list[dict[str, Any]], *, checkpoint: bool = False) -> Any:
    from rich.text import Text

    styles = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}
    what = ["checkpoint", "step"] if checkpoint else []
    table = _table("time", "rank", "level", *what, "message", right=("step",))
    for event in events:
        stamp = event.get("timestamp")
        level = str(event.get("level", ""))
        row = [
            fmt.clock_seconds(stamp if isinstance(stamp, (int, float)) else None),
            str(event.get("rank", "-")),
            Text(level, style=styles.get(level, "")),
        ]
        if checkpoint:  # saved, deleted, loaded, ... (the CheckpointManager's events)
            row += [str(event["checkpoint"]), str(event.get("step", "-"))]
        row.append(str(event.get("message", "")))
        table.add_row(*row)
    return table
