"""Durable atomic replacement: content, permissions, failure leaves the old file and no temp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from expmate.durable import is_temp_file, replace_bytes_durably, replace_durably


def test_new_file_gets_content_size_and_umask_mode(tmp_path: Path) -> None:
    """A new file holds the bytes, its size is returned, its mode is 0666 minus the umask."""
    old = os.umask(0o027)
    try:
        size = replace_bytes_durably(tmp_path / "a.bin", b"hello")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").read_bytes() == b"hello"
    assert size == 5
    assert oct(os.stat(tmp_path / "a.bin").st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_replacement_keeps_the_old_permissions(tmp_path: Path) -> None:
    """Replacing a file keeps its permission bits."""
    path = tmp_path / "b.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    replace_bytes_durably(path, b"new content")
    assert (path.read_bytes(), oct(os.stat(path).st_mode & 0o777)) == (b"new content", "0o600")


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    """The writer raises half-way: the old file is untouched and the temporary file is gone."""
    path = tmp_path / "c.bin"
    path.write_bytes(b"old")

    def half(handle: object) -> None:
        handle.write(b"partial")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        replace_durably(path, half)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.bin"]


def test_temporary_names_are_recognised(tmp_path: Path) -> None:
    """The hidden ``.<name>.<random>.tmp`` names are what is_temp_file recognises."""
    assert is_temp_file(".step_00000001.pt.ab12.tmp")
    assert not is_temp_file("step_00000001.pt")
    assert not is_temp_file(".hidden")
