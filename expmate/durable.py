"""Durable atomic file replacement: the old file or the new one, even across a power loss.

A temporary file in the same directory (a rename across filesystems would copy), fsynced, renamed
over the target with ``os.replace``, then the directory fsynced so that the rename itself is on
disk. A process killed at any instant leaves the old file or the new one, plus at most a hidden
``.<name>.<random>.tmp`` file that the owner may remove later.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def temp_prefix(name: str) -> str:
    """The prefix of the temporary files made while replacing ``name``."""
    return f".{name}."


def _umask() -> int:
    """The process's umask, read without changing it (Linux), else by setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(path: Path) -> int:
    """The permissions a replacement of ``path`` gets: the old file's, else ``0666 & ~umask``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename, a new or removed file) to the disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(path: Path, write: Callable[[BinaryIO], object]) -> int:
    """Replace ``path`` by what ``write`` writes to a binary file object, durably and atomically.

    Args:
        path: the file to create or replace; its permissions are kept.
        write: called once with the open temporary file.

    Returns:
        The size of the new file in bytes.

    Raises:
        OSError: the write, fsync or rename failed (disk full, ...): the temporary file is removed
            and ``path`` is untouched. Whatever ``write`` raises propagates the same way.
    """
    import tempfile  # only here: slow to import, needed only when a file is replaced

    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            size = os.fstat(handle.fileno()).st_size
        os.chmod(tmp, file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return size


def replace_bytes_durably(path: Path, data: bytes | memoryview) -> int:
    """:func:`replace_durably` with bytes already in memory."""
    return replace_durably(path, lambda handle: handle.write(data))


def is_temp_file(name: str) -> bool:
    """Whether ``name`` is a temporary file left by :func:`replace_durably`."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)
