"""The metric methods of :class:`~expmate.ExperimentLogger`: values, sync points, bests, the stop.

They validate nothing themselves: each hands its call to the logger's
:class:`~expmate.metric_router.MetricRouter`, which records a value on this rank or reduces it
across ranks first.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from expmate.metric_router import DEFAULT, MetricRouter
from expmate.metric_store import MetricStore, checked_metrics


class MetricMethods:
    """``log_metric``, ``log_metrics``, ``sync``, best and last values, the agreed stop."""

    closed: bool
    run_dir: Path
    _router: MetricRouter
    _metrics: MetricStore

    def _raise_closed(self) -> NoReturn:
        raise RuntimeError(
            f"ExperimentLogger for {str(self.run_dir)!r} is closed; nothing was logged"
        )

    def log_metric(
        self,
        step: int,
        split: str,
        name: str,
        value: Any,
        track_best: bool = True,
        mode: str | None = None,
        *,
        reduce: str | None = DEFAULT,
        weight: float = 1.0,
    ) -> None:
        """Append one row to ``metrics.csv`` and update the best value of ``{split}_{name}``.

        Args:
            step: the training step or epoch (an integer).
            split: ``train``, ``val``, ``test``, ... (any text; quoted in the CSV as needed).
            name: the metric name.
            value: int, float, bool, numpy scalar, or a one-element tensor on any device (device
                values are copied to the host once per flush or sync, never per call).
            track_best: keep the best value in ``best.json``.
            mode: ``min`` or ``max``; None detects it from the name (``loss`` -> min, ``accuracy``
                -> max) and leaves a name that says neither untracked.
            reduce: ``mean``, ``sum``, ``min``, ``max`` across ranks, or None for this rank's own
                value; defaults to the logger's ``reduce``.
            weight: this rank's weight in a ``mean`` (e.g. its sample count).

        Raises:
            TypeError, ValueError: a bad step, split, name, value, mode or reduction, named.
            MetricMismatchError, SyncTimeoutError: under torchrun, from the previous sync point
                (this call's value is kept all the same).
        """
        if self.closed:
            self._raise_closed()
        self._router.log_metric(step, split, name, value, track_best, mode, reduce, weight)

    def log_metrics(
        self,
        step: int,
        split: str,
        metrics: Mapping[str, Any],
        *,
        track_best: bool = True,
        reduce: str | None = DEFAULT,
        weight: float = 1.0,
    ) -> None:
        """Log every ``name: value`` of ``metrics`` for one step and split (modes from the names).

        All or nothing: every item is checked first, so one bad name or value raises before any
        row is written.

        Raises:
            TypeError, ValueError: a bad step, split, name or value (named), or not a mapping.

        Example:
            >>> logger.log_metrics(3, "val", {"loss": 0.41, "accuracy": 0.9})  # doctest: +SKIP
        """
        for name, value in checked_metrics(self._metrics, split, metrics):
            self.log_metric(step, split, name, value, track_best, reduce=reduce, weight=weight)

    def sync(self) -> None:
        """Reduce the metrics buffered so far now and wait until they are written (a collective
        once any reduced metric was logged: every rank must call it at the same point)."""
        if self.closed:
            self._raise_closed()
        self._router.sync()

    def get_best_metric(self, name: str, split: str = "val") -> dict[str, Any] | None:
        """``{'value', 'step', 'mode'}`` of the best ``split``/``name`` so far, or None.

        Device values logged since the last flush are copied to the host first. A reduced metric
        first waits for the sync in progress; the steps still buffered (the current window of
        ``sync_every`` steps) count from their sync point on.
        """
        return self._router.get_best(split, name)

    def get_last_metric(self, name: str, split: str = "val") -> dict[str, Any] | None:
        """``{'value', 'step'}`` of the latest ``split``/``name`` logged, or None.

        The value written to ``metrics.csv``: under reduction the global value, known on every
        rank (counted as for :meth:`get_best_metric`).
        """
        return self._router.get_last(split, name)

    # ------------------------------------------------------------------ the agreed stop

    def request_stop(self) -> None:
        """Ask every rank to stop: :meth:`should_stop` turns True on every rank at the same step.

        Safe to call from a signal handler. Under torchrun the request travels in the next
        collective of reduced metrics and is agreed at the sync point after it (at most
        ``2 * sync_every`` steps later); in one process it is agreed at once.
        """
        self._router.request_stop()

    def should_stop(self) -> bool:
        """True once some rank asked to stop (:meth:`request_stop`, or a signal when
        ``stop_signals`` is on), on every rank from the same sync point on.

        Example:
            >>> if logger.should_stop():  # doctest: +SKIP
            ...     save_checkpoint(step)  # every rank, the same step
            ...     break
        """
        return self._router.should_stop()
