"""``summary.json``: the small record of a run that listing thousands of runs reads instead of the rest.

Rank 0 replaces it atomically at its flushes (every ``flush_interval`` while the run is alive: the
heartbeat), at ``close()``, at exit and on SIGTERM. It is built from what the logger already keeps
in memory (the latest value and the best value of each metric), so ``log_metric`` costs nothing
more for it; a flush that the buffer forces in a tight loop rewrites it at most once per flush
interval.

A reader tells a run killed without a word (SIGKILL, a lost node) by a ``running`` status whose
heartbeat is older than a few flush intervals: :func:`observed_status`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from expmate.sinks.base import replace_file, report_failure

FORMAT = 1
FILE_NAME = "summary.json"

# A run whose heartbeat is older than this many flush intervals (and at least KILLED_MIN_AGE
# seconds: a loaded machine or a long pause of the flusher thread is not a death) was killed.
KILLED_INTERVALS = 5
KILLED_MIN_AGE = 10.0

# (split, name, [last value, last step] or None, {"value", "step", "mode"} or None)
MetricEntry = tuple[str, str, "list[Any] | None", "dict[str, Any] | None"]


def _number(value: Any) -> Any:
    """A JSON-safe number: non-finite floats spelled as strings, as in ``events.jsonl``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def metric_entry(split: str, name: str, last: Any, best: dict[str, Any] | None) -> dict[str, Any]:
    """One entry of ``metrics``: ``{"split", "name", "last", "last_step", "best", "best_step",
    "mode"}`` (the best fields null for a metric whose best is not tracked)."""
    return {
        "split": split,
        "name": name,
        "last": None if last is None else _number(last[0]),
        "last_step": None if last is None else last[1],
        "best": None if best is None else best["value"],
        "best_step": None if best is None else best["step"],
        "mode": None if best is None else best["mode"],
    }


class SummaryFile:
    """Builds and writes rank 0's ``summary.json``.

    An earlier ``summary.json`` in the run directory (a reopened run, a torchrun restart) gives
    the start time and the metrics this process has not logged yet, so the record covers the
    whole run.

    Args:
        path: the file.
        run_id: the logger's run id.
        start_time: when this logger was created (Unix seconds); an earlier start is kept.
        flush_interval: the logger's flush interval (readers judge the heartbeat by it).
        world_size: processes in the job.
    """

    def __init__(
        self,
        path: Path,
        *,
        run_id: str,
        start_time: float,
        flush_interval: float,
        world_size: int,
    ) -> None:
        self.path: Path | None = path
        self.run_id = run_id
        self.start_time = start_time
        self.flush_interval = flush_interval
        self.world_size = world_size
        self.written_at = 0.0  # when this process last wrote it (0: never)
        self._earlier: dict[str, Any] = {}
        self._load_earlier(path)

    def _load_earlier(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            report_failure(f"reading {path} (it will be replaced)", exc)
            return
        if not isinstance(data, dict):
            return
        start = data.get("start_time")
        if isinstance(start, (int, float)) and start < self.start_time:
            self.start_time = float(start)
        metrics = data.get("metrics")
        if isinstance(metrics, dict):
            self._earlier = {k: v for k, v in metrics.items() if isinstance(v, dict)}

    def build(
        self, entries: list[MetricEntry], now: float, end: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The content of ``summary.json`` at ``now``.

        Args:
            entries: the metrics of this process (see :meth:`MetricStore.tracked`).
            now: the heartbeat (Unix seconds).
            end: how the run ended (:func:`expmate.run_end.outcome`), or None while it runs.
        """
        metrics = dict(self._earlier)
        for split, name, last, best in entries:
            if last is None and best is None:
                continue
            metrics[f"{split}/{name}"] = metric_entry(split, name, last, best)
        steps = [m["last_step"] for m in metrics.values() if isinstance(m.get("last_step"), int)]
        data: dict[str, Any] = {"format": FORMAT, "run_id": self.run_id}
        data.update(end if end is not None else {"status": "running"})
        data.update(
            start_time=self.start_time,
            heartbeat=now,
            end_time=now if end is not None else None,
            flush_interval=self.flush_interval,
            world_size=self.world_size,
            last_step=max(steps) if steps else None,
            metrics=metrics,
        )
        return data

    def write(self, entries: list[MetricEntry], now: float, end: dict[str, Any] | None) -> None:
        """Replace the file atomically; a failure is reported once and training goes on."""
        if self.path is None:
            return
        text = json.dumps(self.build(entries, now, end), indent=2, allow_nan=False) + "\n"
        try:
            replace_file(self.path, text)
        except OSError as exc:
            report_failure(f"writing {self.path}", exc)
        self.written_at = now


def observed_status(summary: dict[str, Any], now: float) -> str:
    """The status a reader reports: the recorded one, or ``killed`` for a ``running`` run whose
    heartbeat is older than :data:`KILLED_INTERVALS` flush intervals (and KILLED_MIN_AGE s).

    Example:
        >>> observed_status({"status": "running", "heartbeat": 100.0, "flush_interval": 1.0}, 105.0)
        'running'
        >>> observed_status({"status": "running", "heartbeat": 100.0, "flush_interval": 1.0}, 200.0)
        'killed'
    """
    status = str(summary.get("status", "unknown"))
    if status != "running":
        return status
    heartbeat = summary.get("heartbeat")
    interval = summary.get("flush_interval")
    if not isinstance(heartbeat, (int, float)):
        return status
    if not isinstance(interval, (int, float)) or interval <= 0:
        interval = 1.0
    if now - heartbeat > max(KILLED_INTERVALS * interval, KILLED_MIN_AGE):
        return "killed"
    return status
