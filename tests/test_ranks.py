"""expmate.ranks: rank and world size from torchrun's environment, without importing torch."""

from __future__ import annotations

import pytest

from expmate.ranks import detect_rank, detect_world_size, process_group_ready


def test_plain_process_is_rank_zero_of_one() -> None:
    """Without RANK/WORLD_SIZE (and no process group) a process is rank 0 of 1."""
    assert (detect_rank(), detect_world_size(), process_group_ready()) == (0, 1, False)


def test_torchrun_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """RANK and WORLD_SIZE answer when no process group is up."""
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert (detect_rank(), detect_world_size()) == (3, 8)


def test_bad_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A RANK that is not an integer is an error naming the variable and its value."""
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ValueError, match=r"RANK='zero'"):
        detect_rank()
