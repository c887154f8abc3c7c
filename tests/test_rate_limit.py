"""expmate.rate_limit: the limiter that decides which passes of a log_every block are shown."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from expmate import rate_limit
from expmate.rate_limit import RateLimiter, check_rate


def test_every_fires_on_the_first_and_every_nth_pass() -> None:
    """every=4 fires on passes 0, 4 and 8 of 10."""
    limiter = RateLimiter(4, None)
    assert [i for i in range(10) if limiter.fire()] == [0, 4, 8]


def test_every_one_always_fires() -> None:
    """every=1 shows every pass."""
    limiter = RateLimiter(1, None)
    assert all(limiter.fire() for _ in range(5))


def test_seconds_fires_when_the_interval_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    """seconds=2 fires at t=0, not at 1.9, at 2.0, not at 3.9, at 4.5."""
    times = iter([0.0, 1.9, 2.0, 3.9, 4.5])
    monkeypatch.setattr(rate_limit, "time", SimpleNamespace(monotonic=lambda: next(times)))
    limiter = RateLimiter(None, 2.0)
    assert [limiter.fire() for _ in range(5)] == [True, False, True, False, True]


@pytest.mark.parametrize(("every", "seconds"), [(1, None), (100, None), (None, 0.5), (None, 5)])
def test_check_rate_accepts_one_positive_bound(every: int | None, seconds: float | None) -> None:
    """Exactly one positive every (int) or seconds (number) passes."""
    check_rate(every, seconds)
