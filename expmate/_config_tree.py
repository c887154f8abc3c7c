"""The configuration tree: defaults, merging files, applying overrides, checking a dataclass schema.

The tree is a plain nested ``dict``. A *schema* exists only when the defaults are a dataclass: a
``dict`` with one entry per field, holding a nested schema for a dataclass-typed field and the
field's type otherwise. Without a schema, files may add keys freely and an override keeps the type
of the value it replaces.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from collections.abc import Mapping
from typing import Any

from expmate._config_values import (
    NULL_WORDS,
    ConfigError,
    flow_value,
    from_text,
    to_type,
    type_name,
    type_of_value,
)

__all__ = [
    "REQUIRED",
    "apply_override",
    "defaults_tree",
    "leaves",
    "merge",
    "validate",
]

Schema = dict[str, Any]


class _Required:
    """Marks a dataclass field that has no default and has not been given a value yet."""

    def __repr__(self) -> str:
        return "<required>"

    def __copy__(self) -> _Required:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Required:
        return self


REQUIRED: Any = _Required()
_ABSENT: Any = object()


def defaults_tree(defaults: Any) -> tuple[dict[str, Any], Schema | None]:
    """The starting tree and, for a dataclass (class or instance), its schema.

    Raises:
        TypeError: ``defaults`` is neither None, a mapping nor a dataclass.
    """
    if defaults is None:
        return {}, None
    if dataclasses.is_dataclass(defaults):
        cls = defaults if isinstance(defaults, type) else type(defaults)
        return _dataclass_tree(defaults), _dataclass_schema(cls)
    if isinstance(defaults, Mapping):
        return _plain_mapping(defaults), None
    raise TypeError(f"defaults must be a dict or a dataclass, got {type(defaults).__name__}")


def _plain_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {
        str(k): _plain_mapping(v) if isinstance(v, Mapping) else copy.deepcopy(v)
        for k, v in mapping.items()
    }


def _dataclass_schema(cls: type) -> Schema:
    hints = typing.get_type_hints(cls)
    schema: Schema = {}
    for field in dataclasses.fields(cls):
        tp = hints[field.name]
        is_nested = dataclasses.is_dataclass(tp) and isinstance(tp, type)
        schema[field.name] = _dataclass_schema(tp) if is_nested else tp
    return schema


def _dataclass_tree(obj: Any) -> dict[str, Any]:
    cls = obj if isinstance(obj, type) else type(obj)
    hints = typing.get_type_hints(cls)
    tree: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if not isinstance(obj, type):
            value = getattr(obj, field.name)
        elif field.default is not dataclasses.MISSING:
            value = field.default
        elif field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
        elif dataclasses.is_dataclass(hints[field.name]):
            value = hints[field.name]  # a nested class: its own field defaults
        else:
            value = REQUIRED
        if dataclasses.is_dataclass(value):
            value = _dataclass_tree(value)
        tree[field.name] = copy.deepcopy(value)
    return tree


def _child_schema(schema: Any, part: str) -> tuple[bool, Any]:
    """(whether ``part`` is a known key below ``schema``, the schema or type found there)."""
    if isinstance(schema, dict):
        return (True, schema[part]) if part in schema else (False, None)
    origin = typing.get_origin(schema)
    if schema is Any or schema is dict:
        return True, Any
    if origin is dict:
        args = typing.get_args(schema)
        return True, args[1] if len(args) == 2 else Any
    return False, None


def _schema_at(schema: Schema | None, parts: list[str]) -> tuple[bool, Any]:
    node: Any = schema
    for part in parts:
        found, node = _child_schema(node, part)
        if not found:
            return False, None
    return True, node


def all_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key of the tree, inner ones included."""
    keys: list[str] = []
    for k, v in tree.items():
        key = f"{prefix}{k}"
        keys.append(key)
        if isinstance(v, Mapping):
            keys.extend(all_keys(v, f"{key}."))
    return keys


def unknown_key(key: str, tree: Mapping[str, Any], *, where: str = "") -> ConfigError:
    """The error for a key that is not in the config, with the closest known key."""
    known = all_keys(tree)
    last = key.rsplit(".", 1)[-1]
    close = [k for k in known if k.rsplit(".", 1)[-1] == last and k != key]
    close = close or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    place = f" in {where}" if where else ""
    return ConfigError(f"unknown key '{key}'{place}{hint}; write +{key}=VALUE to add a new key")


def merge(
    base: dict[str, Any],
    new: Mapping[str, Any],
    *,
    schema: Any,
    source: str,
    root: dict[str, Any] | None = None,
    prefix: str = "",
) -> None:
    """Deep-merge ``new`` into ``base`` in place: mappings merge, anything else replaces.

    An int replacing a float becomes a float (``lr: 1`` after ``lr: 0.001``).

    Raises:
        ConfigError: with a schema, ``new`` has a key the schema does not know.
    """
    root = base if root is None else root
    for k, value in new.items():
        key = f"{prefix}{k}"
        sub: Any = None
        if schema is not None:
            found, sub = _child_schema(schema, k)
            if not found:
                raise unknown_key(key, root, where=source)
        old = base.get(k, _ABSENT)
        if isinstance(old, dict) and isinstance(value, Mapping):
            merge(old, value, schema=sub, source=source, root=root, prefix=f"{key}.")
        elif isinstance(old, float) and type(value) is int:
            base[k] = float(value)
        else:
            base[k] = _plain_mapping(value) if isinstance(value, Mapping) else copy.deepcopy(value)


def apply_override(
    tree: dict[str, Any], schema: Schema | None, key: str, text: str, *, add: bool = False
) -> None:
    """Set ``key`` (dotted) from command-line ``text``, keeping the key's type.

    Raises:
        ConfigError: the key is unknown (and ``add`` is False) or the text is not of its type.
    """
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"invalid key '{key}' in override '{key}={text}'")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part, _ABSENT)
        if not isinstance(child, dict):
            if not add or child not in (_ABSENT, None):
                raise unknown_key(".".join(parts[: depth + 1]) if child is _ABSENT else key, tree)
            child = node[part] = {}
        node = child
    leaf = parts[-1]
    old = node.get(leaf, _ABSENT)
    found, declared = _schema_at(schema, parts) if schema is not None else (False, None)
    if old is _ABSENT and not found and not add:
        raise unknown_key(key, tree)
    if isinstance(declared, dict) or (not found and isinstance(old, dict)):
        _override_mapping(node, leaf, text, key=key, schema=declared if found else None, root=tree)
        return
    if found:
        node[leaf] = from_text(text, declared, key)
    elif text.strip() in NULL_WORDS:
        node[leaf] = None  # any untyped key may be cleared
    else:
        tp = type_of_value(old) if old is not _ABSENT and old is not REQUIRED else Any
        node[leaf] = from_text(text, tp, key)


def _override_mapping(
    node: dict[str, Any], leaf: str, text: str, *, key: str, schema: Any, root: dict[str, Any]
) -> None:
    """``key={a: 1}`` merges into the mapping at ``key``; ``key=null`` clears it."""
    stripped = text.strip()
    if stripped in NULL_WORDS:
        node[leaf] = None
        return
    value = flow_value(stripped, key) if stripped.startswith("{") else _ABSENT
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping such as {{name: value}}, got {text!r}")
    if not isinstance(node.get(leaf), dict):
        node[leaf] = {}
    merge(node[leaf], value, schema=schema, source=f"override {key}", root=root, prefix=f"{key}.")


def validate(tree: dict[str, Any], schema: Schema, prefix: str = "") -> None:
    """Check and convert every schema field of ``tree`` in place.

    Raises:
        ConfigError: a required field has no value, or a value is not of its field's type.
    """
    for name, node in schema.items():
        key = f"{prefix}{name}"
        value = tree.get(name, REQUIRED)
        if value is REQUIRED:
            raise ConfigError(
                f"missing required key '{key}' (set it in a config file or with {key}=VALUE)"
            )
        if isinstance(node, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping, got {value!r}")
            validate(value, node, f"{key}.")
        else:
            tree[name] = to_type(value, node, key)


def leaves(tree: Mapping[str, Any], schema: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, value, type name) for every leaf, in order: what ``--help`` lists."""
    rows: list[tuple[str, Any, str]] = []
    for k, value in tree.items():
        key = f"{prefix}{k}"
        found, sub = _child_schema(schema, k) if schema is not None else (False, None)
        if isinstance(value, dict) and value and (not found or isinstance(sub, dict)):
            rows.extend(leaves(value, sub if found else None, f"{key}."))
            continue
        if found and not isinstance(sub, dict):
            name = type_name(sub)
        elif value is None or value is REQUIRED:
            name = "any"
        else:
            name = type(value).__name__
        rows.append((key, value, name))
    return rows
