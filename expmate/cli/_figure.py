"""Drawing the panels of ``expmate plot``: matplotlib for files, plotext for the terminal.

Both libraries are imported here only, when a plot is drawn (the ``plot`` extra).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from expmate.cli import EXIT_NO_DATA, CliError

if TYPE_CHECKING:
    from expmate.cli.plot import Panel

# Colors that stay apart for the color-blind (Okabe-Ito), in matplotlib.
DASHES = ("solid", "dashed", "dotted", "dashdot")  # one per split: train, val, test, ...
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _grid_shape(count: int) -> tuple[int, int]:
    cols = 1 if count == 1 else 2
    return math.ceil(count / cols), cols


def save_figure(
    built: list[Panel], xlabel: str, path: str, *, smoothing: float, title: str | None
) -> None:
    """Write the panels to ``path`` (.png, .svg or .pdf), one subplot each.

    Raises:
        CliError: the file cannot be written.
    """
    from matplotlib.figure import Figure

    from expmate.cli.plot import smooth, spacing

    rows, cols = _grid_shape(len(built))
    size = (8.0, 4.5) if len(built) == 1 else (6.4 * cols, 4.0 * rows)
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    for ax, panel in zip(axes, built, strict=False):
        unit = spacing(panel)
        for line in panel.lines:
            color = PALETTE[line.run % len(PALETTE)]
            dash = DASHES[line.split % len(DASHES)]
            if smoothing:
                ax.plot(line.x, line.y, color=color, linestyle=dash, alpha=0.25, linewidth=1.0)
                values = smooth(line.y, smoothing, line.x, unit)
                ax.plot(
                    line.x, values, color=color, linestyle=dash, linewidth=1.8, label=line.label
                )
            else:
                ax.plot(
                    line.x, line.y, color=color, linestyle=dash, linewidth=1.6, label=line.label
                )
        _style(ax, panel.title, xlabel)
    for ax in axes[len(built) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=13)
    try:
        figure.savefig(path, dpi=150)
    except OSError as exc:
        raise CliError(f"cannot write {path!r}: {exc.strerror or exc}", EXIT_NO_DATA) from None


def _style(ax: Any, title: str, xlabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel(xlabel)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, fontsize=9)


def terminal_figure(
    built: list[Panel],
    xlabel: str,
    *,
    width: int,
    height: int,
    smoothing: float,
    title: str | None,
    colorless: bool,
) -> str:
    """The panels drawn as text for a terminal of ``width`` x ``height`` characters."""
    import plotext

    from expmate.cli.plot import smooth, spacing

    figure = plotext.figure  # plotext 6: one figure object; its methods draw
    figure.clear.data()
    figure.clear.subplots()
    figure.clear.settings()
    rows, cols = _grid_shape(len(built))
    figure.theme("simple")
    figure.plot_size(width, height)
    if len(built) > 1:
        figure.subplots(rows, cols)
    for index, panel in enumerate(built):
        target = figure.subplot(index // cols + 1, index % cols + 1) if len(built) > 1 else figure
        unit = spacing(panel)
        for line in panel.lines:
            values = smooth(line.y, smoothing, line.x, unit) if smoothing else line.y
            points = [(x, y) for x, y in zip(line.x, values, strict=True) if math.isfinite(y)]
            signal = target.signal([p[0] for p in points], [p[1] for p in points])
            signal.label(line.label)
            signal.lines()
            target.draw(signal)
        target.title(panel.title if not title or len(built) > 1 else f"{title}: {panel.title}")
        target.label(xlabel, axis="x")
    return str(figure.build().string(colorless=colorless)).rstrip("\n")
