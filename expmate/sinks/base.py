"""Buffered, append-only files whose every flush is whole lines, and the report-once policy."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path

from expmate.csv_records import whole_end

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
    already in it is truncated. A write that fails part way (a full disk) is taken back, so the
    file still ends with a whole line; if that is not possible the cut line is ended before the
    next lines.

    Args:
        path: the file.
        header: a line written first when the file is new or empty (the CSV header).
        csv_records: the file holds CSV records, which may span lines (a quoted field with a
            newline): a cut last *record* is what is set aside.
        lazy: create the file only when the first lines are written (a file with nothing to say
            never appears).
    """

    __slots__ = ("_csv", "_cut", "_fd", "_header", "_needs_header", "_opened", "buffer", "path")

    def __init__(
        self,
        path: Path,
        *,
        header: str | None = None,
        csv_records: bool = False,
        lazy: bool = False,
    ) -> None:
        self.path = path
        self._header = header
        self._csv = csv_records
        self.buffer: list[str] = []
        self._fd: int | None = None
        self._opened = False
        self._cut = False  # the file ends inside a line that a failed write cut short
        self._needs_header = False
        if not lazy:
            self._open()

    def _open(self) -> None:
        self._opened = True
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size > 0:
                size = self._repair(size)
        except BaseException:
            os.close(fd)
            raise
        self._needs_header = size == 0 and self._header is not None
        self._fd = fd

    def _repair(self, size: int) -> int:
        """Set aside a last line (or CSV record) cut short; returns the file's new size."""
        if self._csv:
            keep = whole_end(self.path, size)
        else:
            with open(self.path, "rb") as existing:
                existing.seek(size - 1)
                if existing.read(1) == b"\n":
                    return size
                start = max(0, size - (1 << 20))
                existing.seek(start)
                newline = existing.read().rfind(b"\n")
            if newline == -1 and start > 0:
                self._cut = True  # a line over 1 MiB: just end it
                return size
            keep = start + newline + 1
        if keep == size:
            return size
        return self._set_aside(size, keep)

    def _set_aside(self, size: int, keep: int) -> int:
        """Move the bytes after ``keep`` (a last line cut short by a kill inside a write of
        several pages, or a power loss) to ``<file>.torn``, so the file holds only whole lines
        again; returns the new size.

        Nothing is lost: the fragment is kept, and one line on stderr says where.
        """
        torn = self.path.with_name(self.path.name + ".torn")
        try:
            with open(self.path, "rb") as existing:
                existing.seek(keep)
                fragment = existing.read(size - keep)
            with open(torn, "ab") as aside:
                aside.write(fragment + b"\n")
            os.truncate(self.path, keep)
        except OSError as exc:
            report_failure(f"setting aside the cut last line of {self.path}", exc)
            self._cut = True
            return size
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(
                f"expmate: the last line of {self.path} was cut short (the process was killed "
                f"while writing it); its {size - keep} bytes were moved to {torn}\n"
            )
        return keep

    def take(self) -> list[str]:
        """Hand over the waiting lines (the caller writes them with :meth:`write`).

        The buffer stays the same list, emptied in place: a signal handler that flushes in the
        middle of an emit (between the emit loading ``buffer`` and appending its line) must not
        leave that line in a list nobody writes.
        """
        lines = self.buffer[:]
        self.buffer.clear()
        return lines

    def write(self, lines: list[str]) -> bool:
        """Write ``lines`` in one write; on failure report once and drop them.

        Returns:
            False when the lines were dropped (the write failed, or the file is closed).
        """
        if not lines:
            return True
        if self._fd is None and not self._open_late():
            return False
        fd = self._fd
        assert fd is not None
        prefix = "\n" if self._cut else ""
        if self._needs_header:
            prefix += self._header or ""
        data = (prefix + "".join(lines)).encode("utf-8", "backslashreplace")
        done = 0
        try:
            before = os.fstat(fd).st_size
            while done < len(data):
                done += os.write(fd, memoryview(data)[done:])
        except OSError as exc:
            report_failure(f"writing {self.path}", exc)
            if done:
                self._take_back(fd, before, done, data, len(prefix))
            return False
        self._cut = False
        self._needs_header = False
        return True

    def _open_late(self) -> bool:
        """Open a lazy file at its first write; False (reported once) when that fails."""
        if self._opened:
            return False  # closed
        try:
            self._open()
        except OSError as exc:
            self._opened = False  # try again at the next write
            report_failure(f"writing {self.path}", exc)
            return False
        return True

    def _take_back(self, fd: int, before: int, done: int, data: bytes, prefix: int) -> None:
        """After a write that stored only ``done`` bytes, remove them again, so the file still
        ends where it did (whole lines); when another process appended meanwhile, or the
        truncation fails, remember to end the cut line before the next lines instead."""
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_size == before + done:
                os.ftruncate(fd, before)
                return
        self._cut = data[done - 1] != 0x0A
        if self._needs_header and done >= prefix:
            self._needs_header = False

    def flush(self) -> None:
        """Write every waiting line now."""
        self.write(self.take())

    def discard(self) -> None:
        """Forget waiting lines (a forked child must not write its parent's lines again)."""
        self.buffer.clear()

    def abandon(self) -> None:
        """Forget waiting lines and close this process's descriptor without writing anything
        (a forked child leaving a file to its parent)."""
        self.buffer.clear()
        self._opened = True
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Flush and close the file; closing twice is harmless."""
        self.flush()
        self._opened = True  # a lazy file never opened stays uncreated
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
    one. The file gets the usual ``0644`` permissions. Nothing is imported here: this runs at
    interpreter exit, where an import would make an interrupted script exit with status 1
    instead of 130 (it clears the interpreter's record of an unhandled KeyboardInterrupt).

    Raises:
        OSError: the write or the rename failed (the temporary file is removed).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        data = memoryview(text.encode("utf-8") if isinstance(text, str) else text)
        while data:
            data = data[os.write(fd, data) :]
        os.close(fd)
        fd = -1
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if fd != -1:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
