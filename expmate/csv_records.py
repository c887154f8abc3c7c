"""Records of a metrics CSV file, which are not always lines: a quoted split or name may hold a
newline (RFC 4180), so a record ends only at a newline outside quotes.

Used to repair a file whose last record a kill cut short, to count the rows before a resume
marker and to read rows back. Quotes in a field are doubled, so "inside quotes" at any byte is
the parity of the quote characters before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


def _boundaries(chunk: bytes, odd: bool) -> tuple[int, bool]:
    """The offset just past the last record-ending newline in ``chunk`` (-1 if none), and
    whether the chunk ends inside quotes, given whether it starts inside quotes."""
    last = -1
    start = 0
    while True:
        quote = chunk.find(b'"', start)
        end = len(chunk) if quote == -1 else quote
        if not odd:
            newline = chunk.rfind(b"\n", start, end)
            if newline != -1:
                last = newline + 1
        if quote == -1:
            return last, odd
        odd = not odd
        start = quote + 1


def whole_end(path: Path, size: int | None = None) -> int:
    """The length of the longest prefix of ``path`` that holds only whole CSV records.

    Args:
        path: the file.
        size: read only this many bytes from the start (the file's size when None).

    Returns:
        The offset just past the last newline that ends a record (0 when there is none).
    """
    end = 0
    odd = False
    offset = 0
    with open(path, "rb") as handle:
        while size is None or offset < size:
            want = _CHUNK if size is None else min(_CHUNK, size - offset)
            chunk = handle.read(want)
            if not chunk:
                break
            last, odd = _boundaries(chunk, odd)
            if last != -1:
                end = offset + last
            offset += len(chunk)
    return end


def read_rows(path: Path) -> Iterator[list[str]]:
    """The data rows (after the header) of the whole records of a metrics CSV file.

    A last record cut short (no record-ending newline yet) is left out; a missing file has none.
    """
    import csv  # only here: reading rows back is rare, and the module is slow to import

    try:
        end = whole_end(path)
    except FileNotFoundError:
        return
    with open(path, "rb") as handle:
        reader = csv.reader(_lines(handle, end))
        next(reader, None)  # the header
        yield from reader


def _lines(handle: BinaryIO, end: int) -> Iterator[str]:
    """The text lines (newline kept) of the first ``end`` bytes of ``handle``."""
    read = 0
    for line in handle:
        if read + len(line) > end:
            break
        read += len(line)
        yield line.decode("utf-8", "replace")


def count_rows(path: Path) -> int:
    """How many data rows (whole records after the header) ``path`` holds; 0 if it is missing."""
    try:
        end = whole_end(path)
    except FileNotFoundError:
        return 0
    with open(path, "rb") as handle:
        head = handle.read(min(end, _CHUNK))
        quoted = b'"' in head
        newlines = head.count(b"\n")
        read = len(head)
        while read < end:
            chunk = handle.read(min(_CHUNK, end - read))
            quoted = quoted or b'"' in chunk
            newlines += chunk.count(b"\n")
            read += len(chunk)
    if not quoted:  # every newline ends a record: the header's and one per row
        return max(newlines - 1, 0)
    return sum(1 for _ in read_rows(path))


__all__ = ["count_rows", "read_rows", "whole_end"]
