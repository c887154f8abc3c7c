"""Buffered, append-only files whose every flush is whole lines, and the report-once policy."""

from __future__ import annotations

import contextlib
import os
import sys
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
    wait), then go out as a single write of complete lines. A kill can cut such a write short
    only at a page boundary, so only the file's last line can be left incomplete; the next open
    moves that fragment to ``<file>.torn``. The file is opened once, in append mode; nothing
    already in it is truncated.

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
        if size > 0 and not self._ends_with_newline(size):
            size = self._set_aside_cut_line(size)
        if size == 0 and self._header is not None:
            self.buffer.append(self._header)
        self._fd = fd

    def _ends_with_newline(self, size: int) -> bool:
        with open(self.path, "rb") as existing:
            existing.seek(size - 1)
            return existing.read(1) == b"\n"

    def _set_aside_cut_line(self, size: int) -> int:
        """Move a last line cut short (by a kill inside a write of several pages, or a power loss)
        to ``<file>.torn``, so the file holds only whole lines again; returns the new size.

        Nothing is lost: the fragment is kept, and one line on stderr says where.
        """
        start = max(0, size - (1 << 20))
        with open(self.path, "rb") as existing:
            existing.seek(start)
            tail = existing.read()
        newline = tail.rfind(b"\n")
        if newline == -1 and start > 0:
            self.buffer.append("\n")  # a line over 1 MiB: just end it
            return size
        keep = start + newline + 1
        torn = self.path.with_name(self.path.name + ".torn")
        try:
            with open(torn, "ab") as aside:
                aside.write(tail[newline + 1 :] + b"\n")
            os.truncate(self.path, keep)
        except OSError as exc:
            report_failure(f"setting aside the cut last line of {self.path}", exc)
            self.buffer.append("\n")
            return size
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(
                f"expmate: the last line of {self.path} was cut short (the process was killed "
                f"while writing it); its {size - keep} bytes were moved to {torn}\n"
            )
        return keep

    def take(self) -> list[str]:
        """Hand over the waiting lines (the caller writes them with :meth:`write`)."""
        lines, self.buffer = self.buffer, []
        return lines

    def write(self, lines: list[str]) -> None:
        """Write ``lines`` in one write; on failure report once and drop them."""
        if not lines or self._fd is None:
            return
        data = "".join(lines).encode("utf-8", "backslashreplace")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            report_failure(f"writing {self.path}", exc)
            self._recover(len(data) - len(view), data)

    def _recover(self, done: int, data: bytes) -> None:
        """After a failed write, keep the file whole for the lines that come next: end a line the
        failure cut short, or write again a header that never reached the file."""
        if done > 0:
            if data[done - 1] != 0x0A:
                self.buffer.insert(0, "\n")
        elif self._header is not None and self._fd is not None:
            with contextlib.suppress(OSError):
                if os.fstat(self._fd).st_size == 0:
                    self.buffer.insert(0, self._header)

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


def replace_file(path: Path, text: str | bytes) -> None:
    """Write ``text`` (UTF-8, or bytes as they are) to a temporary file beside ``path``, then
    rename it over ``path``.

    A reader (or a process killed at any instant) sees the old file or the new one, never part of
    one. The file gets the usual ``0644`` permissions.

    Raises:
        OSError: the write or the rename failed (the temporary file is removed).
    """
    import tempfile  # only here: it is slow to import and needed only at a flush

    data = text.encode("utf-8") if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
