"""Machine-readable events: one strict-JSON object a line.

Strict means no bare ``NaN``/``Infinity`` tokens: a non-finite float is written as the string
``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (the spelling of the protobuf JSON mapping), so every line
parses with any JSON reader and the information is kept. Values JSON cannot encode (paths, numpy
scalars, tensors, sets, dataclasses, anything else) are converted, never a crash.
"""

from __future__ import annotations

import enum
import json
import math
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path, PurePath
from typing import Any

from expmate.events import Event
from expmate.sinks.base import AppendFile

_NONFINITE = {math.inf: '"Infinity"', -math.inf: '"-Infinity"'}


def _repr(value: Any) -> str:
    """``repr(value)``, or a placeholder naming the type when that ``__repr__`` itself fails."""
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not stop logging
        return f"<{type(value).__qualname__} object>"


def _plain(value: Any) -> Any:
    """Turn one value JSON cannot encode into one it can (called by ``json.dumps`` as ``default``)."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if type(value).__module__ == "datetime" and hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):
        import dataclasses

        return dataclasses.asdict(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        try:
            detach = getattr(value, "detach", None)
            return (detach() if callable(detach) else value).tolist()
        except Exception:  # noqa: BLE001 - any odd object falls back to its repr below
            pass
    return _repr(value)


_MAX_DEPTH = 100  # deeper (or circular) structures are written as their repr


def big_int_text(value: int) -> str:
    """An integer too long for decimal text (over 4300 digits, Python's limit) as ``0x...``."""
    return hex(value)


def _jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` rebuilt from what JSON holds: non-finite floats spelled as strings, integers
    over 4300 digits as hex strings, other objects converted by :func:`_plain`.

    Raises:
        ValueError: nested more than ``_MAX_DEPTH`` levels (or circular).
    """
    if depth > _MAX_DEPTH:
        raise ValueError("structure too deep to encode")
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        try:
            json.dumps(value)
        except ValueError:
            return big_int_text(value)
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    converted = _plain(value)
    if type(converted) is str:
        return converted
    return _jsonable(converted, depth + 1)


def json_line_value(value: Any) -> str:
    """Encode one field value as strict JSON text."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)  # type: ignore[no-any-return]
    if kind is int:
        try:
            return str(value)
        except ValueError:  # over 4300 digits
            return f'"{big_int_text(value)}"'
    if value is None or kind is bool:
        return json.dumps(value)
    if kind is float:
        if value != value:
            return '"NaN"'
        return _NONFINITE.get(value) or repr(value)
    try:
        return json.dumps(value, default=_plain, allow_nan=False, ensure_ascii=False)
    except (TypeError, RecursionError):
        return encode_basestring(_repr(value))  # type: ignore[no-any-return]
    except ValueError:
        pass
    try:
        # A NaN or a huge integer somewhere inside (possibly only after conversion), or a
        # circular structure: rebuild it and spell those out.
        return json.dumps(_jsonable(value), allow_nan=False, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        return encode_basestring(_repr(value))  # type: ignore[no-any-return]


class JsonlSink:
    """Writes each event as one JSON object line of ``events.jsonl`` (or ``events_rank{r}.jsonl``).

    Args:
        path: the file.
        run_id: written into every event.
        rank: written into every event.
    """

    def __init__(self, path: Path, *, run_id: str, rank: int) -> None:
        self.file = AppendFile(path)
        self._tail = f', "run_id": {encode_basestring(run_id)}, "rank": {int(rank)}'

    def emit(self, event: Event) -> None:
        extra = ""
        if event.stage is not None:
            extra = f', "stage": {encode_basestring(event.stage)}'
        if event.fields:
            extra += "".join(
                f", {encode_basestring(str(k))}: {json_line_value(v)}"
                for k, v in event.fields.items()
            )
        if event.rate_limited:
            extra += ', "rate_limited": true'
        self.file.buffer.append(
            f'{{"timestamp": {event.timestamp!r}, "level": "{event.level}", '
            f'"message": {encode_basestring(event.message)}{self._tail}{extra}}}\n'
        )

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


__all__ = ["JsonlSink", "json_line_value"]
