"""Buffered, append-only files whose every flush is whole lines, and the report-once policy."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path

_reported: set[str] = set()
_reported_lock = threading.Lock()


def report_failure(what: str, exc: BaseException) -> None:
    """Write one line to stderr the first time ``what`` fails; later failures stay silent.

    Training goes on: a logging sink must never take the run down with it.
    """
    with _reported_lock:
        if what in _reported:
            return
        _reported.add(what)
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(
            f"expmate: {what} failed ({type(exc).__name__}: {exc}); "
            "training continues, further failures of it are not reported\n"
        )


class AppendFile:
    """An append-only text file fed whole lines and written in one ``os.write`` per flush.

    Lines wait in ``buffer`` until :meth:`flush` (the owner decides when, and bounds how many
    wait), then go out as a single write of complete lines, so a process killed at any instant leaves no torn line. The file
    is opened once, in append mode; nothing already in it is truncated.

    Args:
        path: the file.
        header: a line written first when the file is new or empty (the CSV header).
    """

    __slots__ = ("_fd", "_header", "buffer", "path")

    def __init__(self, path: Path, *, header: str | None = None) -> None:
        self.path = path
        self._header = header
        self.buffer: list[str] = []
        self._fd: int | None = None
        self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        if size == 0:
            if self._header is not None:
                self.buffer.append(self._header)
        elif not self._ends_with_newline(size):
            # A line cut short by a power loss must not swallow the next one.
            self.buffer.append("\n")
        self._fd = fd

    def _ends_with_newline(self, size: int) -> bool:
        with open(self.path, "rb") as existing:
            existing.seek(size - 1)
            return existing.read(1) == b"\n"

    def take(self) -> list[str]:
        """Hand over the waiting lines (the caller writes them with :meth:`write`)."""
        lines, self.buffer = self.buffer, []
        return lines

    def write(self, lines: list[str]) -> None:
        """Write ``lines`` in one write; on failure report once and drop them."""
        if not lines or self._fd is None:
            return
        data = "".join(lines).encode("utf-8", "backslashreplace")
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            report_failure(f"writing {self.path}", exc)

    def flush(self) -> None:
        """Write every waiting line now."""
        self.write(self.take())

    def discard(self) -> None:
        """Forget waiting lines (a forked child must not write its parent's lines again)."""
        self.buffer.clear()

    def close(self) -> None:
        """Flush and close the file; closing twice is harmless."""
        self.flush()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError as exc:
                report_failure(f"closing {self.path}", exc)
            self._fd = None


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    A reader (or a process killed at any instant) sees the old file or the new one, never part of
    one. The file gets the usual ``0644`` permissions.

    Raises:
        OSError: the write or the rename failed (the temporary file is removed).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
