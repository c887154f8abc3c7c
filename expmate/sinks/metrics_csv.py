"""``metrics.csv``: header ``step,split,name,value,wall_time``, RFC 4180 quoting, exact floats."""

from __future__ import annotations

from pathlib import Path

from expmate.sinks.base import AppendFile

HEADER = "step,split,name,value,wall_time\n"


def csv_field(text: str) -> str:
    """Quote a field the way RFC 4180 asks: only when it holds a comma, quote, CR or LF."""
    if any(ch in text for ch in ',"\r\n') or text != text.strip(" "):
        return '"' + text.replace('"', '""') + '"'
    return text


def format_value(value: float | int) -> str:
    """The shortest text that reads back as exactly the same number (``nan``/``inf`` as such)."""
    return repr(value) if type(value) is float else str(value)


class MetricsCsvSink:
    """Appends metric rows; the header is written only when the file is new or empty.

    The file is created by the first write of rows (never empty, never without its header), and
    repaired record by record: a quoted split or name may hold a newline.

    The rows go through :meth:`row`, which takes the already-quoted ``,split,name,`` middle so the
    hot path does no quoting work for a (split, name) pair it has seen before.
    """

    def __init__(self, path: Path) -> None:
        self.file = AppendFile(path, header=HEADER, csv_records=True, lazy=True)

    def row(self, step: int, middle: str, value: float | int, wall_time: float) -> None:
        # repr of an int is its str, and of a float the shortest exact text (nan/inf as such).
        self.file.buffer.append(f"{step}{middle}{value!r},{wall_time:.3f}\n")

    @staticmethod
    def middle(split: str, name: str) -> str:
        """The ``,split,name,`` part of a row, quoted as needed."""
        return f",{csv_field(split)},{csv_field(name)},"

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()
