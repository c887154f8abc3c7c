"""ExperimentLogger: builds events from calls and hands them to this rank's sinks."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from expmate import flushing, run_end
from expmate import stop_signals as stopping
from expmate.attempts import AttemptLog, resume_event, resume_history
from expmate.colors import use_color
from expmate.events import (
    KIND_MESSAGE,
    LEVELS,
    Event,
    level_name,
)
from expmate.logger_options import check_options, prepare_run_dir
from expmate.message_methods import MessageMethods
from expmate.metric_methods import MetricMethods
from expmate.metric_router import MAX_WAITING as _MAX_WAITING
from expmate.metric_router import MetricRouter
from expmate.metric_store import MetricStore
from expmate.rank_files import events_name, log_name, metrics_name
from expmate.ranks import detect_rank, detect_world_size, process_group_ready
from expmate.rate_limit import RateLimiter
from expmate.sinks import (
    AppendFile,
    ConsoleSink,
    HandlerSink,
    JsonlSink,
    TextLogSink,
    report_failure,
)
from expmate.spans import StageStack
from expmate.summary import FILE_NAME as SUMMARY_FILE
from expmate.summary import SummaryFile
from expmate.values import reduce_op, step_value

if TYPE_CHECKING:
    from expmate.mirrors import Mirror

_ids = itertools.count()


class ExperimentLogger(MessageMethods, MetricMethods):
    """Console, ``exp.log``, ``events.jsonl``, ``metrics.csv`` and ``best.json`` in one run directory.

    Under torchrun each rank writes its own files (``exp_rank{r}.log``, ``events_rank{r}.jsonl``,
    ``metrics_rank{r}.csv`` for unreduced metrics); only global rank 0 prints to the console and
    writes ``metrics.csv``/``best.json``. Metrics logged with ``reduce=`` are combined across ranks
    (see ``docs/distributed.md`` for exactly when that collective runs).

    Args:
        run_dir: the run directory (created if missing). None generates ``runs/<run_id>``, the same
            name on every rank.
        rank: this process's global rank; None reads it from the process group or ``RANK``.
        run_id: written into every JSONL event; defaults to the run directory's name.
        log_level: DEBUG, INFO, WARNING, ERROR or CRITICAL; None uses ``expmate.log_level``.
        console_output: print to the console (global rank 0 only).
        reduce: the default cross-rank reduction of ``log_metric`` (``mean``, ``sum``, ``min``,
            ``max``), or None to log each rank's own values.
        sync_timeout: seconds a rank waits for the others at a metric sync before failing.
        sync_every: steps whose reduced metrics travel in one collective (a sync point at
            every ``sync_every``-th step, decided from the step alone).
        stop_signals: True makes SIGTERM and SIGUSR1 request the agreed stop (see
            :meth:`should_stop`) instead of ending the process; or the signals to use.
        flush_interval: at most this many seconds pass before buffered lines reach the disk.
        color: force console colors on or off; None decides from NO_COLOR, FORCE_COLOR and the TTY.
        console_stream: where console lines go; None means the current ``sys.stdout``.
        capture_git: record the git state of the working directory in ``run.json`` (and the
            uncommitted diff in ``git.diff``); None uses ``expmate.capture_git``.
        system_metrics: sample process CPU and memory and GPU use every this many seconds, as
            metrics of split ``system`` in each rank's own file; with ``reduce=`` under torchrun
            ``metrics.csv`` gets their maximum over ranks (see ``docs/integrations.md``). None
            samples nothing.
        mirror: live mirrors of ``metrics.csv``, the config and the best values, forwarded from
            global rank 0 on background threads: ``"tensorboard"``, ``"wandb"``, ``"mlflow"``,
            :class:`expmate.mirrors.Mirror` instances, or a list of them (docs/integrations.md).

    Raises:
        NotADirectoryError, OSError, PermissionError: ``run_dir`` cannot hold the run's files.
        RunDirInUseError: another logger (in this process or another) writes this rank's files
            of ``run_dir``; the message names it (pid, host).
        ValueError: an unknown level, reduction, signal, mirror name or a non-positive interval.
        RuntimeError: ``stop_signals`` off the main thread, or under torchrun without a group.
        TypeError: ``capture_git`` is not a bool or None.
        ModuleNotFoundError: a named mirror's tracker is not installed (the message names the
            ``pip install "expmate[...]"`` that adds it).

    Example:
        >>> logger = ExperimentLogger(run_dir="runs/exp1", console_output=False)  # doctest: +SKIP
        >>> logger.log_metric(step=0, split="val", name="loss", value=0.5)  # doctest: +SKIP
        >>> logger.get_best_metric("loss")  # doctest: +SKIP
        {'value': 0.5, 'step': 0, 'mode': 'min'}
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        rank: int | None = None,
        run_id: str | None = None,
        log_level: str | int | None = None,
        console_output: bool = True,
        *,
        reduce: str | None = None,
        sync_timeout: float = 300.0,
        sync_every: int = 1,
        stop_signals: bool | Sequence[str | int] = False,
        flush_interval: float = 1.0,
        color: bool | None = None,
        console_stream: IO[str] | None = None,
        capture_git: bool | None = None,
        system_metrics: float | None = None,
        mirror: str | Mirror | Sequence[str | Mirror] | None = None,
    ) -> None:
        pkg = sys.modules["expmate"]
        capture_git = check_options(
            capture_git=capture_git,
            system_metrics=system_metrics,
            flush_interval=flush_interval,
            sync_timeout=sync_timeout,
            sync_every=sync_every,
        )
        self.level = level_name(log_level if log_level is not None else pkg.log_level)
        self._levelno = LEVELS[self.level]
        self.default_reduce = reduce_op(reduce)
        signums = stopping.signals_of(stop_signals)
        stopping.check_installable(signums)
        self.flush_interval = float(flush_interval)
        self.sync_timeout = float(sync_timeout)
        self.sync_every = sync_every
        if mirror is not None:
            from expmate.mirrors import build_mirrors

            mirror = build_mirrors(mirror)  # checked on every rank, before anything is written
        self.rank = detect_rank() if rank is None else int(rank)
        self.world_size = detect_world_size()
        distributed = self.world_size > 1 and process_group_ready()
        if signums and self.world_size > 1 and not distributed:
            raise RuntimeError(
                f"stop_signals={stop_signals!r} under WORLD_SIZE={self.world_size} needs a "
                "torch.distributed process group to agree on the stop; call "
                "expmate.torch.mp.setup_ddp() before creating the logger"
            )
        if run_dir is None:
            from expmate.run_id import shared_run_id

            run_dir = Path("runs") / shared_run_id(run_id)
        self.run_dir = Path(run_dir)
        prepare_run_dir(self.run_dir)
        self.run_id = str(run_id) if run_id is not None else self.run_dir.name
        self._text_path = self.run_dir / log_name(self.rank)
        events_path = self.run_dir / events_name(self.rank)
        resumed = events_path.exists()
        # First of all: the lock on this rank's files (one writer), and the restart history.
        self._attempts = AttemptLog(self.run_dir, self.rank, world_size=self.world_size)

        # _lock guards buffers and in-memory state; re-entrant so that a SIGTERM handler running
        # on the main thread inside a logging call can still flush. _io_lock orders flushes; it is
        # taken before _lock, never after.
        self._lock = threading.RLock()
        self._io_lock = threading.Lock()
        uid = next(_ids)
        self._stages: ContextVar[StageStack] = ContextVar(f"expmate_stages_{uid}", default=())
        self._quiet: ContextVar[bool] = ContextVar(f"expmate_quiet_{uid}", default=False)
        try:
            self._jsonl = JsonlSink(events_path, run_id=self.run_id, rank=self.rank)
            self._human: TextLogSink | HandlerSink = TextLogSink(self._text_path)
        except BaseException as exc:
            self._attempts.close(run_end.outcome(exc))
            raise
        self._handler: logging.Handler | None = None
        self._console: ConsoleSink | None = None
        if console_output and self.rank == 0:
            stream = console_stream if console_stream is not None else sys.stdout
            self._console = ConsoleSink(console_stream, color=use_color(stream, color))
        self._metrics = MetricStore(
            self.run_dir / metrics_name(self.rank),
            self.run_dir / "best.json" if self.rank == 0 else None,
        )
        self._mirrors: Any = None
        self._summary: SummaryFile | None = None
        if self.rank == 0:
            self._summary = SummaryFile(
                self.run_dir / SUMMARY_FILE,
                run_id=self.run_id,
                start_time=time.time(),
                flush_interval=self.flush_interval,
                world_size=self.world_size,
            )
        self._router = MetricRouter(
            self._metrics,
            rank=self.rank,
            world_size=self.world_size,
            default_reduce=self.default_reduce,
            sync_timeout=self.sync_timeout,
            sync_every=sync_every,
            flush=functools.partial(self.flush_files, forced=True, wait_copies=False),
        )
        self._limiters: dict[Any, RateLimiter] = {}
        self._waiting = 0
        self._last_flush = time.time()
        self.closed = False
        flushing.register(self)
        self._opened(resumed)
        self._ending: BaseException | None = None
        self._start_extras(
            capture_git, system_metrics, distributed and self.default_reduce is not None
        )
        if distributed and (self.default_reduce is not None or signums):
            # A logger that reduces by default (or agrees on a stop) joins the reduction group
            # now (every rank builds its logger at the same point), so sync()/flush()/close()
            # are collectives from the start, on every rank alike.
            self._router.start()
        stopping.enable(self, signums)
        if mirror and self.rank == 0:
            from expmate.mirrors.forwarder import MirrorSet, run_info

            self._mirrors = MirrorSet(mirror, self._metrics, run_info(self.run_dir, self.run_id))

    def _start_extras(
        self, capture_git: bool, system_metrics: float | None, reducing: bool
    ) -> None:
        """``run.json`` (rank 0; every rank publishes its host, no collective) and the system
        metrics thread (``reducing``: the maxima over ranks ride along the reduction)."""
        from expmate import provenance

        self._run_record = provenance.start(
            self.run_dir,
            run_id=self.run_id,
            rank=self.rank,
            world_size=self.world_size,
            capture_git=capture_git,
        )
        self._system: Any = None
        if system_metrics is not None:
            from expmate.system_metrics import SystemMetrics

            across = self._router.add_columns if reducing else None
            self._system = SystemMetrics(
                self._metrics, float(system_metrics), self.warning, across=across, rank=self.rank
            )

    def _opened(self, resumed: bool) -> None:
        """Record what the run directory should know about how this process started."""
        if self.rank == 0:
            from expmate.config import active_config

            config = active_config()
            if config is not None:
                config.save(self.run_dir / "config.yaml")
        restarts = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        if restarts.isdigit() and int(restarts) > 0:
            # Recorded whatever the log level: a restart must never go unnoticed in the files.
            message = f"Restarted by torchrun (restart {restarts}); appending to {self.run_dir}"
            fields = {"restart_count": int(restarts)}
            self._dispatch(Event(time.time(), "WARNING", message, KIND_MESSAGE, None, fields))
        elif resumed:
            message = f"Resuming run: appending to existing files in {self.run_dir}"
            self._dispatch(Event(time.time(), "INFO", message))

    def _dispatch(self, event: Event) -> None:
        """Hand one event to the sinks: JSONL always, the human transcript unless rate-limited."""
        with self._lock:
            self._jsonl.emit(event)
            if not event.rate_limited:
                self._human.emit(event)
                if self._console is not None and sys.modules["expmate"].verbose:
                    self._console.emit(event)
            self._waiting += 1
            full = self._waiting >= _MAX_WAITING
        if full:
            self.flush_files(forced=True)

    # ------------------------------------------------------------------ resuming from a checkpoint

    def resume(self, step: int) -> None:
        """Record that training continues from ``step`` (after loading a checkpoint): rewind.

        Rows written before this call with a step >= ``step`` stay in the metrics file but are
        superseded: readers leave them out, and the best values (``best.json``,
        :meth:`get_best_metric`) and latest values are recomputed from the rows that survive.
        Writes a resume marker to ``attempts.jsonl`` and a resume event to ``events.jsonl``.
        Call it on every rank (no collective), before logging the resumed steps.

        Args:
            step: the first step the resumed training logs (a checkpoint saved after step S
                was logged resumes at S + 1).

        Raises:
            TypeError, ValueError: ``step`` is not an integer.
        """
        if self.closed:
            self._raise_closed()
        step = step_value(step)
        self._router.wait()  # reduced values in flight land before the history is rewound
        self.flush_files()
        with self._io_lock:
            marker = resume_history(self._attempts, self._metrics, step)
        self._dispatch(resume_event(marker, self.run_dir))
        self.flush_files()

    # ------------------------------------------------------------------ custom handler

    @property
    def log_handler(self) -> logging.Handler | None:
        """The ``logging.Handler`` that receives the human-readable log instead of ``exp.log``."""
        return self._handler

    @log_handler.setter
    def log_handler(self, handler: logging.Handler | None) -> None:
        if handler is not None and not isinstance(handler, logging.Handler):
            raise TypeError(f"log_handler must be a logging.Handler or None, not {handler!r}")
        with self._io_lock, self._lock:
            self._human.close()
            self._handler = handler
            self._human = (
                HandlerSink(handler) if handler is not None else TextLogSink(self._text_path)
            )

    # ------------------------------------------------------------------ flushing and closing

    def due(self, now: float) -> bool:
        """Whether the flush interval has passed (asked by the background flusher)."""
        return now - self._last_flush >= self.flush_interval

    def flush_files(
        self,
        now: float | None = None,
        *,
        wait: bool = True,
        end: dict[str, Any] | None = None,
        forced: bool = False,
        last: bool = False,
        wait_copies: bool = True,
    ) -> None:
        """Write every buffered line, ``best.json`` and ``summary.json`` now; no cross-rank
        communication.

        Args:
            now: the time to record as the last flush.
            wait: False when called from a signal handler or at exit: wait at most half a second
                for a flush in progress elsewhere, then write anyway.
            end: how the run ended (:func:`expmate.run_end.outcome`), recorded in
                ``summary.json``; None while it runs.
            forced: the flush was forced by a full buffer; ``summary.json`` is then rewritten
                only if its heartbeat is a flush interval old.
            last: the final flush of :meth:`close`: no later flush (the background flusher may
                still hold this logger) rewrites ``summary.json``.
            wait_copies: wait until the device values' copies to the host have completed and
                write their rows; False (the background flush, a forced one) starts the copies
                and writes the rows of those already completed, never waiting for a device.
        """
        ordered = self._io_lock.acquire(timeout=-1 if wait else 0.5)
        try:
            self._flush_locked(now, end, forced, last, wait_copies)
        finally:
            if ordered:
                self._io_lock.release()
        flushing.after_flush()  # a signal that arrived during this flush: act on it now

    def _flush_locked(
        self,
        now: float | None,
        end: dict[str, Any] | None,
        forced: bool,
        last: bool,
        wait_copies: bool,
    ) -> None:
        try:
            self._metrics.materialize(wait=wait_copies)
        except Exception as exc:  # noqa: BLE001 - a broken device must not stop the flush
            report_failure("copying device metric values", exc)
        with self._lock:
            batches = [(f, f.take()) for f in self._files()]
            self._waiting = 0
        summary = self._summary
        clock = time.time()
        if summary is not None and (
            summary.path is None or (forced and clock - summary.written_at < self.flush_interval)
        ):
            summary = None
        metric_batches, bests, entries = self._metrics.take(tracked=summary is not None)
        for target, lines in batches:
            target.write(lines)
        entries = self._metrics.write(metric_batches, bests, entries)
        if isinstance(self._human, HandlerSink):
            self._human.flush()
        if self._console is not None:
            self._console.flush()
        if summary is not None and entries is not None:
            summary.write(entries, clock, end)
            if last:
                summary.path = None  # the run's end is recorded; nothing may overwrite it
        self._last_flush = clock if now is None else now

    def flush(self) -> None:
        """Reduce waiting metrics (a collective under torchrun once reduced metrics were logged),
        then write everything buffered to disk."""
        if self.closed:
            return
        self._router.sync()
        self.flush_files()

    def _files(self) -> list[AppendFile]:
        """The buffered message files this logger writes now (metrics: see MetricStore)."""
        human = [self._human.file] if isinstance(self._human, TextLogSink) else []
        return [self._jsonl.file, *human]

    def after_fork(self) -> None:
        """Drop waiting lines (called in a forked child, which must not write its parent's lines)."""
        for file in self._files():
            file.discard()
        self._waiting = 0
        self._metrics.after_fork()
        self._mirrors = None  # their threads stayed in the parent
        self._router.after_fork()
        if self._summary is not None:
            self._summary.path = None  # one writer: the parent process
        self._attempts.detach()
        # A lock held by another thread at the fork stays held forever in the child: renew them.
        self._lock = threading.RLock()
        self._io_lock = threading.Lock()

    def close(self, *, sync: bool = True) -> None:
        """Reduce what is waiting (unless ``sync=False``), flush and close every file.

        ``summary.json`` and ``run.json`` record how the run ended: finished; failed, with an
        exception on its way out (a ``with`` block left by it, ``close()`` in a ``finally`` or an
        ``except``, a final sync that failed); interrupted (Ctrl-C, or a SIGTERM noted before).
        Closing twice is harmless; logging after close raises RuntimeError.
        """
        if self.closed:
            return
        try:
            self._router.close(sync=sync)
        finally:
            # An exception on its way out (a `with` block left by it, close() in a `finally`, a
            # final sync that failed) is how the run ended.
            end = run_end.outcome(self._ending or sys.exc_info()[1])
            if self._system is not None:
                self._system.stop()
            if self._mirrors is not None:
                self._close_mirrors(end)
            self.flush_files(end=end, last=True)
            self.closed = True
            flushing.unregister(self)
            stopping.disable(self)
            with self._io_lock, self._lock:
                self._jsonl.close()
                self._human.close()
                self._metrics.close()
            self._attempts.close(end)
            if self._run_record is not None:
                self._run_record.finish(end)

    def _close_mirrors(self, end: dict[str, Any]) -> None:
        """Let the mirrors take the last rows and the best values; a loss becomes a WARNING."""
        for message, fields in self._mirrors.close(end):
            self._dispatch(Event(time.time(), "WARNING", message, KIND_MESSAGE, None, fields))
        self._mirrors = None

    def __enter__(self) -> ExperimentLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # On an exception other ranks may never reach a collective: close without one. The
        # exception is how the run ended (summary.json, run.json).
        self._ending = exc
        self.close(sync=exc_type is None)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"ExperimentLogger(run_dir={str(self.run_dir)!r}, rank={self.rank}, {state})"
