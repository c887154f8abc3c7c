"""``expmate plot RUN... -m val/loss``: metric curves, to a file (matplotlib) or the terminal
(plotext), one line per run and split; ``--follow`` redraws the terminal plot as runs grow."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expmate.cli import EXIT_NO_DATA, EXIT_USAGE, CliError, require
from expmate.cli._select import add_runs_argument, metric_key, select_runs

if TYPE_CHECKING:
    from expmate.runs import Run

FORMATS = (".png", ".svg", ".pdf")


def register(subparsers: Any) -> None:
    """Add ``expmate plot``."""
    parser = subparsers.add_parser(
        "plot",
        help="plot metrics of runs to a PNG/SVG/PDF file or in the terminal",
        description="Plot metrics, one panel per -m and one line per run and split. Without -o "
        'the plot is drawn in the terminal. Needs pip install "expmate[plot]".',
    )
    add_runs_argument(parser)
    parser.add_argument(
        "-m",
        "--metric",
        action="append",
        required=True,
        metavar="METRIC",
        help="SPLIT/NAME (val/loss), or NAME (loss) for every split; repeat for more panels",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write a .png, .svg or .pdf file")
    parser.add_argument(
        "--smooth",
        type=_smoothing,
        default=0.0,
        metavar="W",
        help="exponential moving average weight in [0, 1) (0.9 is smooth; default 0: none)",
    )
    parser.add_argument(
        "--x", choices=("step", "time"), default="step", help="x axis: step or time since start"
    )
    parser.add_argument(
        "--follow", action="store_true", help="redraw the terminal plot as the runs grow"
    )
    parser.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="seconds between redraws"
    )
    parser.add_argument("--title", help="a title above the panels")
    parser.set_defaults(handler=run)


def _smoothing(text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = -1.0
    if not 0.0 <= weight < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), not {text!r}")
    return weight


def smooth(
    values: list[float], weight: float, x: Sequence[float] | None = None, unit: float = 1.0
) -> list[float]:
    """Exponential moving average with the start-up bias removed (as TensorBoard draws it).

    With ``x``, a gap of ``d`` between points counts as ``d / unit`` steps of the average (the
    weight is ``weight ** (d / unit)``), so lines logged at different intervals (a train loss
    every step, a validation loss every epoch) are smoothed over the same span of x. Non-finite
    values are passed through and do not enter the average.

    Example:
        >>> smooth([1.0, 0.0, 0.0], 0.5)
        [1.0, 0.3333333333333333, 0.14285714285714285]
    """
    if weight == 0.0:
        return list(values)
    out = []
    average = 0.0
    kept = 1.0  # the product of the weights so far: what the start-up bias is made of
    previous = None
    for i, value in enumerate(values):
        if not math.isfinite(value):
            out.append(value)
            continue
        w = weight
        if x is not None and previous is not None:
            w = weight ** max(0.0, (x[i] - x[previous]) / unit)
        average = average * w + (1.0 - w) * value
        kept *= w
        out.append(average / (1.0 - kept) if kept < 1.0 else value)
        previous = i
    return out


def spacing(panel: Panel) -> float:
    """The smallest median gap between neighbouring x values of a panel's lines: the x span of
    one smoothing step, the same for every line of the panel."""
    gaps = []
    for line in panel.lines:
        deltas = sorted(b - a for a, b in zip(line.x, line.x[1:], strict=False) if b > a)
        if deltas:
            gaps.append(deltas[len(deltas) // 2])
    return min(gaps) if gaps else 1.0


@dataclass
class Line:
    """One curve: its label, points, and which run (color) and split (dash) it belongs to."""

    label: str
    x: Sequence[float]
    y: list[float]
    run: int = 0
    split: int = 0


@dataclass
class Panel:
    """One ``-m`` argument: its title and lines."""

    title: str
    lines: list[Line]


def _unit(span: float) -> tuple[str, float]:
    """(unit name, seconds per unit) for a time axis of ``span`` seconds."""
    if span >= 2 * 3600:
        return "h", 3600.0
    if span >= 120:
        return "min", 60.0
    return "s", 1.0


def _split_order(split: str) -> tuple[int, str]:
    """train first, then val, then the others by name (train solid, val dashed, ...)."""
    known = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
    return known.get(split, 3), split


def panels(runs: list[Run], metrics: list[str], *, x: str) -> tuple[list[Panel], str]:
    """The panels to draw, and the x axis label.

    Raises:
        CliError: a metric that none of the runs has (the message lists those they have).
    """
    wanted = [(text, *metric_key(text)) for text in metrics]
    raw: list[tuple[str, list[tuple[Run, str, Sequence[float], list[float]]]]] = []
    for text, split, name in wanted:
        found = []
        for run in runs:
            for key in run.metric_names():
                s, n = key.split("/", 1)
                if n == name and (split is None or s == split):
                    xs, ys = run.metric(s, n, x=x)
                    found.append((run, s, xs, ys))
        if not found:
            have = sorted({k for run in runs for k in run.metric_names()})
            listed = ", ".join(have) if have else "none (the runs have no metric rows)"
            raise CliError(f"no run has metric {text!r}; metrics: {listed}", EXIT_NO_DATA)
        raw.append((text, found))
    label = "step"
    origin: dict[int, float] = {}
    scale = 1.0
    if x == "time":
        for _, found in raw:
            for run, _, xs, _ in found:
                origin[id(run)] = min(origin.get(id(run), math.inf), run.start_time or xs[0], xs[0])
        span = max(xs[-1] - origin[id(run)] for _, found in raw for run, _, xs, _ in found)
        unit, scale = _unit(span)
        label = f"time since start ({unit})"
    run_index = {id(run): i for i, run in enumerate(runs)}
    many_runs = len({id(run) for _, found in raw for run, *_ in found}) > 1
    out = []
    for text, found in raw:
        splits = sorted({s for _, s, _, _ in found}, key=_split_order)
        lines = []
        for run, s, xs, ys in found:
            parts = ([run.id] if many_runs else []) + ([s] if len(splits) > 1 else [])
            if x == "time":
                xs = [(t - origin[id(run)]) / scale for t in xs]
            name = " ".join(parts) or run.id
            lines.append(Line(name, xs, ys, run_index[id(run)], splits.index(s)))
        out.append(Panel(text, lines))
    return out, label


def run(args: argparse.Namespace) -> int:
    """Draw the plot (or keep redrawing it with --follow)."""
    if args.output is not None:
        if args.follow:
            raise CliError("--follow redraws the terminal plot; leave out -o", EXIT_USAGE)
        extension = os.path.splitext(args.output)[1].lower()
        if extension not in FORMATS:
            raise CliError(f"-o takes a .png, .svg or .pdf file, not {args.output!r}", EXIT_USAGE)
        require("matplotlib", extra="plot", purpose="a plot file")
        built, label = panels(select_runs(args.runs), args.metric, x=args.x)
        from expmate.cli._figure import save_figure

        save_figure(built, label, args.output, smoothing=args.smooth, title=args.title)
        print(f"wrote {args.output}")
        return 0
    require("plotext", extra="plot", purpose="a terminal plot")
    if not args.follow:
        built, label = panels(select_runs(args.runs), args.metric, x=args.x)
        sys.stdout.write(_terminal(built, label, args) + "\n")
        return 0
    return _follow(args)


def _terminal(built: list[Panel], label: str, args: argparse.Namespace) -> str:
    from expmate.cli._figure import terminal_figure

    size = shutil.get_terminal_size((100, 30))
    colorless = not sys.stdout.isatty() or "NO_COLOR" in os.environ
    return terminal_figure(
        built,
        label,
        width=size.columns,
        height=max(12, size.lines - 2),
        smoothing=args.smooth,
        title=args.title,
        colorless=colorless,
    )


def _follow(args: argparse.Namespace) -> int:
    """Redraw every ``--interval`` seconds until no run is running any more, or Ctrl-C."""
    if args.interval <= 0:
        raise CliError(f"--interval must be positive, not {args.interval!r}", EXIT_USAGE)
    try:
        while True:
            runs = select_runs(args.runs)
            live = any(r.status == "running" for r in runs)
            try:
                built, label = panels(runs, args.metric, x=args.x)
                text = _terminal(built, label, args)
            except CliError as exc:
                if not live:
                    raise
                text = f"waiting for the first values ({exc})"  # a run that just started
            sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")
            sys.stdout.flush()
            if not live:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
