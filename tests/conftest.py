"""Shared fixtures: a clean environment for every test; a small git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

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


@pytest.fixture(autouse=True)
def _no_git_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    """run.json records no git state unless a test asks for it (capture_git=True): the state of
    the repository the tests run from is no part of what they check. Subprocesses inherit it."""
    import expmate

    monkeypatch.setenv("EXPMATE_CAPTURE_GIT", "0")
    monkeypatch.setattr(expmate, "capture_git", False)


# A fixed identity and clock for commits made by tests, and no user or system git configuration.
GIT_TEST_ENV = {
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_AUTHOR_DATE": "2025-01-23T14:30:22+00:00",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_COMMITTER_DATE": "2025-01-23T14:30:22+00:00",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` (the test identity comes from the environment) and return its output."""
    done = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


def clean_git_record(root: Path) -> dict[str, Any]:
    """What ``git_state.capture`` records for the ``git_repo`` repository while it is clean."""
    return {
        "state": "repository",
        "root": str(root),
        "commit": git(root, "rev-parse", "HEAD").strip(),
        "branch": "main",
        "dirty": False,
        "untracked": 0,
        "diff_bytes": 0,
        "diff_truncated": False,
    }


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with one commit (``train.py``, ``README``) on branch ``main``, resolved."""
    for name, value in GIT_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    root = (tmp_path / "repo").resolve()
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("lr = 0.1\nepochs = 3\n")
    (root / "README").write_text("demo\n")
    git(root, "add", "train.py", "README")
    git(root, "commit", "-q", "-m", "first")
    return root
