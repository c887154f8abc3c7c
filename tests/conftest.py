"""Shared fixtures: a clean environment for every test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without the switches and torchrun variables of the shell that runs them."""
    for name in (
        "NO_COLOR",
        "FORCE_COLOR",
        "EXPMATE_TIMER",
        "EXPMATE_TRACK_METRICS",
        "EXPMATE_VERBOSE",
        "EXPMATE_LOG_LEVEL",
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "TORCHELASTIC_RESTART_COUNT",
        "TORCHELASTIC_RUN_ID",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _no_active_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config parsed by an earlier test must not be saved into a later test's run directory."""
    import expmate.config

    monkeypatch.setattr(expmate.config, "_active", None)
