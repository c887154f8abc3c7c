"""Values of a configuration: reading them from text and converting them to declared types.

Two sources of values meet here. Command-line text (``lr=1e-3``) is interpreted in the light of the
type the key already has; values read from YAML files or given in code are checked and converted
against the types of a dataclass schema. Both raise :class:`ConfigError` naming the key, the value
and the expected type, never falling back to a silent string.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

__all__ = [
    "ConfigError",
    "flow_value",
    "from_text",
    "infer_text",
    "to_type",
    "type_name",
    "type_of_value",
]

NULL_WORDS = frozenset({"null", "Null", "NULL", "~", "None"})
_TRUE_WORDS = frozenset({"true", "1", "yes", "on", "y"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off", "n"})
_INT = re.compile(r"^[-+]?[0-9][0-9_]*$")
_FLOAT = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
    r"|[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"
    r"|\.?(?:inf|Inf|INF))$"
    r"|^\.?(?:nan|NaN|NAN)$"
)


class ConfigError(ValueError):
    """A mistake in the configuration: bad file, bad override, bad value, unknown key."""


ConfigError.__module__ = "expmate.config"


def type_of_value(value: Any) -> Any:
    """The type an untyped key keeps when it is overridden: its current value's.

    A list whose items are all of one scalar type keeps that item type (``[0.1, 0.2]`` stays a list
    of floats). A key whose value is None takes whatever the text reads as (``Any``).
    """
    if value is None:
        return Any
    if isinstance(value, list):
        kinds = {type(item) for item in value}
        if len(kinds) == 1 and next(iter(kinds)) in (bool, int, float, str):
            return list[next(iter(kinds))]  # type: ignore[misc]
        return list
    return type(value)


def type_name(tp: Any) -> str:
    """A short human name for a type: ``int``, ``float | None``, ``list[int]``, ``'a' | 'b'``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return "any"
    if tp is type(None):
        return "None"
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arm) for arm in typing.get_args(tp))
    if origin is Literal:
        return " | ".join(repr(choice) for choice in typing.get_args(tp))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]" if args else origin.__name__
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(repr(member.name) for member in tp)
    return getattr(tp, "__name__", repr(tp))


def _error(key: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")


def _unquote(text: str) -> str | None:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return None


def flow_value(text: str, key: str) -> Any:
    """Parse a YAML flow value (``[1, 2]``, ``{a: 1}``) with the same float rule as config files."""
    import yaml

    from expmate._config_yaml import config_loader

    try:
        return yaml.load(text, Loader=config_loader())  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: cannot parse {text!r} as a YAML list or mapping") from exc


def infer_text(text: str, key: str = "value") -> Any:
    """Read text that has no declared type: null, bool, int, float, list, mapping, else string.

    Only ``true``/``false`` are booleans here (``no`` stays the string ``'no'``); quotes force a
    string: ``"1"`` is ``'1'``.
    """
    stripped = text.strip()
    quoted = _unquote(stripped)
    if quoted is not None:
        return quoted
    if stripped in NULL_WORDS:
        return None
    if stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    if _INT.match(stripped):
        return int(stripped.replace("_", ""))
    if _FLOAT.match(stripped):
        return float(stripped.replace("_", "").replace(".inf", "inf").replace(".nan", "nan"))
    if stripped[:1] in ("[", "{"):
        return flow_value(stripped, key)
    return text


def from_text(text: str, tp: Any, key: str) -> Any:
    """Convert command-line text to ``tp``, the type the key has.

    Raises:
        ConfigError: the text does not read as ``tp``; the message names key, text and type.
    """
    if tp is Any:
        return infer_text(text, key)
    stripped = text.strip()
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        arms = typing.get_args(tp)
        if type(None) in arms and stripped in NULL_WORDS:
            return None
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return from_text(text, arm, key)
            except ConfigError:
                continue
        raise _error(key, text, tp)
    if tp is str:
        quoted = _unquote(stripped)
        return text if quoted is None else quoted
    quoted = _unquote(stripped)
    if quoted is not None:
        return to_type(quoted, tp, key)
    if stripped[:1] in ("[", "{") and (
        origin in (list, tuple, dict) or tp in (list, tuple, dict) or dataclasses.is_dataclass(tp)
    ):
        return to_type(flow_value(stripped, key), tp, key)
    return to_type(stripped, tp, key)


def to_type(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against ``tp`` and convert it where the conversion is exact.

    ``"42"`` becomes 42 for an int, ``1`` becomes 1.0 for a float, ``"yes"`` becomes True for a
    bool; ``"ten"`` for an int, ``1.5`` for an int or ``[1]`` for a str are errors. A dataclass
    type takes a mapping and gives a checked plain dict.

    Raises:
        ConfigError: the value is not of (and not exactly convertible to) ``tp``.
    """
    if tp is Any or tp is object:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise _error(key, value, tp)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return _to_union(value, tp, key)
    if origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice or (isinstance(value, str) and value == str(choice)):
                return choice
        raise _error(key, value, tp)
    if origin is not None or tp in (list, tuple, dict):
        return _to_container(value, tp, key)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _to_dataclass(value, tp, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _to_enum(value, tp, key)
    converter = _SCALARS.get(tp)
    if converter is not None:
        return converter(value, tp, key)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _error(key, value, tp)
    return value  # a typing construct we do not check (TypeVar, Protocol, ...)


def _to_union(value: Any, tp: Any, key: str) -> Any:
    arms = typing.get_args(tp)
    if value is None:
        if type(None) in arms:
            return None
        raise _error(key, value, tp)
    for arm in arms:  # an exact match first, so that 1 stays 1 in `int | float`
        if isinstance(arm, type) and type(value) is arm:
            return value
    for arm in arms:
        if arm is type(None):
            continue
        try:
            return to_type(value, arm, key)
        except ConfigError:
            continue
    raise _error(key, value, tp)


def _to_container(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp) or tp
    args = typing.get_args(tp)
    if origin is dict:
        if not isinstance(value, dict):
            raise _error(key, value, tp)
        value_tp = args[1] if len(args) == 2 else Any
        return {k: to_type(v, value_tp, f"{key}.{k}") for k, v in value.items()}
    if origin not in (list, tuple) or not isinstance(value, (list, tuple)):
        if origin in (list, tuple):
            raise _error(key, value, tp)
        return value
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise _error(key, value, tp)
        return tuple(
            to_type(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    item_tp = args[0] if args else Any
    items = [to_type(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _to_dataclass(value: Any, tp: type, key: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping ({tp.__name__}), got {value!r}")
    hints = typing.get_type_hints(tp)
    out: dict[str, Any] = {}
    for field in dataclasses.fields(tp):
        if field.name in value:
            out[field.name] = to_type(value[field.name], hints[field.name], f"{key}.{field.name}")
        elif field.default is not dataclasses.MISSING:
            out[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            out[field.name] = field.default_factory()
        else:
            raise ConfigError(f"{key}.{field.name}: missing required key")
    unknown = sorted(set(value) - set(out))
    if unknown:
        raise ConfigError(
            f"{key}.{unknown[0]}: unknown key (fields of {tp.__name__}: {', '.join(out)})"
        )
    return out


def _to_enum(value: Any, tp: type[enum.Enum], key: str) -> enum.Enum:
    if isinstance(value, tp):
        return value
    for member in tp:
        if value == member.value or value == member.name:
            return member
    raise _error(key, value, tp)


def _to_bool(value: Any, tp: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise _error(key, value, tp)


def _to_int(value: Any, tp: Any, key: str) -> int:
    if isinstance(value, bool):
        raise _error(key, value, tp)
    if isinstance(value, int):
        return value
    number = value
    if isinstance(value, str):
        text = value.strip()
        if _INT.match(text):
            return int(text.replace("_", ""))
        if _FLOAT.match(text):
            number = float(text.replace("_", ""))
    if isinstance(number, float) and number.is_integer():
        return int(number)  # 1e5 steps is 100000 steps; 2.5 epochs is an error
    raise _error(key, value, tp)


def _to_float(value: Any, tp: Any, key: str) -> float:
    if isinstance(value, bool):
        raise _error(key, value, tp)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if _INT.match(text) or _FLOAT.match(text) or text.lower().lstrip("+-") in ("inf", "nan"):
            return float(text.replace("_", "").replace(".inf", "inf").replace(".nan", "nan"))
    raise _error(key, value, tp)


def _to_str(value: Any, tp: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # exact; a float or bool would not read back as written, so refuse it
    raise _error(key, value, tp)


def _to_path(value: Any, tp: Any, key: str) -> Path:
    if isinstance(value, (str, Path)):
        return Path(value)
    raise _error(key, value, tp)


_SCALARS: dict[Any, Any] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
    Path: _to_path,
}
