"""A progress bar once per job: tqdm on global rank 0's terminal, a periodic log line elsewhere.

- Global rank 0, console on, the console stream a terminal and tqdm installed (the ``progress``
  extra): a tqdm bar on the console stream, with steps/s, ETA and the latest values of chosen
  metrics. The bar is console only (never in ``exp.log`` or ``events.jsonl``); the logger's
  console lines are written above it while it runs.
- Global rank 0 otherwise (no terminal, no tqdm, console off): one INFO line through the logger
  at most every ``seconds`` seconds, and one when the loop ends.
- Every other rank: the iterable itself, untouched.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from expmate.logger import ExperimentLogger

T = TypeVar("T")

_POSTFIX_EVERY = 0.25  # seconds between refreshes of the bar's metric values
_now = time.monotonic  # the clock of the line-by-line form (replaceable in tests)


def metric_names(postfix: str | Sequence[str] | None) -> list[tuple[str, str]]:
    """``[(split, name)]`` of ``postfix`` (``"train/loss"`` -> ``("train", "loss")``).

    Raises:
        TypeError, ValueError: an entry that is not a ``"split/name"`` string.
    """
    if postfix is None:
        return []
    entries = [postfix] if isinstance(postfix, str) else list(postfix)
    pairs = []
    for entry in entries:
        if not isinstance(entry, str):
            raise TypeError(f"postfix entries must be 'split/name' strings, not {entry!r}")
        split, _, name = entry.partition("/")
        if not split or not name:
            raise ValueError(f"postfix entry {entry!r} is not of the form 'split/name'")
        pairs.append((split, name))
    return pairs


def clock(seconds: float) -> str:
    """``MM:SS`` or ``H:MM:SS`` for a duration.

    Example:
        >>> clock(83.4), clock(3725)
        ('01:23', '1:02:05')
    """
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _total_of(iterable: Iterable[Any], total: int | None) -> int | None:
    if total is not None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"total must be a non-negative integer or None, not {total!r}")
        return total
    try:
        return len(iterable)  # type: ignore[arg-type]
    except (TypeError, AttributeError):
        return None


def progress(
    logger: ExperimentLogger,
    iterable: Iterable[T],
    *,
    total: int | None,
    desc: str | None,
    postfix: str | Sequence[str] | None,
    seconds: float,
) -> Iterable[T]:
    """What :meth:`ExperimentLogger.progress` returns (see the module docstring)."""
    pairs = metric_names(postfix)
    count = _total_of(iterable, total)
    if desc is not None and not isinstance(desc, str):
        raise TypeError(f"desc must be a string or None, not {desc!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"seconds must be a positive number, not {seconds!r}")
    if logger.rank != 0:
        return iterable
    console = logger._console
    stream = console.stream if console is not None else None
    if stream is not None and sys.modules["expmate"].verbose and _is_terminal(stream):
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return _bar(logger, tqdm, iterable, count, desc, pairs, stream)
    return _lines(logger, iterable, count, desc, pairs, float(seconds))


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _sized(stream: Any) -> bool:
    """Whether the terminal reports its size."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return size.columns > 0 and size.lines > 0


def _values(logger: ExperimentLogger, pairs: list[tuple[str, str]]) -> list[tuple[str, float]]:
    """The latest recorded value of each metric (no device copy: this runs every few steps)."""
    last = logger._metrics.last
    found = []
    for split, name in pairs:
        entry = last.get(f"{split}_{name}")
        if entry is not None:
            found.append((f"{split}/{name}", entry[0]))
    return found


def _postfix_text(values: list[tuple[str, float]]) -> str:
    return ", ".join(f"{label}={value:.4g}" for label, value in values)


def _bar(
    logger: ExperimentLogger,
    tqdm: Any,
    iterable: Iterable[T],
    total: int | None,
    desc: str | None,
    pairs: list[tuple[str, str]],
    stream: Any,
) -> Iterator[T]:
    console = logger._console
    assert console is not None
    # A terminal that reports no size (0 x 0: `script`, some containers) gets 80 x 20: tqdm
    # would otherwise draw nothing at all.
    sized = _sized(stream)
    bar = tqdm(
        total=total,
        desc=desc,
        file=stream,
        dynamic_ncols=sized,
        ncols=None if sized else 80,
        nrows=None if sized else 20,
    )
    previous = console.write_hook
    # Console lines go above the bar (tqdm clears it, writes the line, draws it again).
    console.write_hook = lambda text: tqdm.write(text, file=stream, end="")
    try:
        refreshed = 0.0
        for item in iterable:
            yield item
            if pairs:
                now = time.monotonic()
                if now - refreshed >= _POSTFIX_EVERY:
                    refreshed = now
                    bar.set_postfix_str(_postfix_text(_values(logger, pairs)), refresh=False)
            bar.update(1)
    finally:
        console.write_hook = previous
        if pairs:  # the bar's last drawing shows the last values
            bar.set_postfix_str(_postfix_text(_values(logger, pairs)), refresh=False)
        bar.close()


def _line(
    desc: str | None, n: int, total: int | None, elapsed: float, values: list[tuple[str, float]]
) -> tuple[str, dict[str, Any]]:
    """The message and event fields of one progress line."""
    rate = n / elapsed if elapsed > 0 else 0.0
    head = f"Progress [{desc}]: " if desc else "Progress: "
    parts = [f"{n}/{total} ({100 * n / total:.0f}%)" if total else f"{n}"]
    parts.append(f"{rate:.3g} it/s")
    fields: dict[str, Any] = {"progress": desc, "n": n, "total": total, "rate": rate}
    if total and n < total and rate > 0:
        eta = (total - n) / rate
        parts.append(f"ETA {clock(eta)}")
        fields["eta"] = eta
    parts.append(f"elapsed {clock(elapsed)}")
    fields["elapsed_s"] = elapsed
    if values:
        parts.append(_postfix_text(values))
        fields.update(values)
    return head + ", ".join(parts), fields


def _lines(
    logger: ExperimentLogger,
    iterable: Iterable[T],
    total: int | None,
    desc: str | None,
    pairs: list[tuple[str, str]],
    seconds: float,
) -> Iterator[T]:
    start = _now()
    due = start + seconds
    n = reported = 0
    try:
        for item in iterable:
            yield item
            n += 1
            now = _now()
            if now >= due:
                due = now + seconds
                reported = n
                message, fields = _line(desc, n, total, now - start, _values(logger, pairs))
                logger.info(message, **fields)
    finally:
        if n != reported and not logger.closed:
            elapsed = _now() - start
            message, fields = _line(desc, n, total, elapsed, _values(logger, pairs))
            logger.info(message, **fields)
