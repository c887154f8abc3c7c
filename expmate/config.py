"""``parse_config()`` and the :class:`Config` it returns.

Precedence, lowest first: defaults given in code (a dict or a dataclass), YAML files
(``--config a.yaml --config b.yaml``, deep-merged in order), then command-line overrides
(``training.epochs=20``). Every config has a ``run_id`` key: given, or generated once and shared
by all ranks of a torchrun job. PyYAML and torch are imported only when they are needed.

Example:
    >>> config = parse_config(["training.epochs=3"], defaults={"training": {"epochs": 10}})
    >>> config.training.epochs
    3
"""

from __future__ import annotations

import copy
import enum
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from expmate import _config_tree as tree_ops
from expmate._config_values import ConfigError
from expmate.sinks.base import replace_file

__all__ = ["Config", "ConfigError", "active_config", "parse_config"]

_active: Config | None = None
_USAGE = "[--config FILE ...] [key=value ...] [+new_key=value ...]"


class Config(Mapping[str, Any]):
    """A nested configuration: ``config.training.epochs`` or ``config['training.epochs']``.

    A nested mapping is returned as a ``Config`` view of the same data, so assigning through it
    (``config.training.epochs = 5``) changes the config. Keys that collide with a method name
    (``items``, ``get``, ``save``, ...) are reached with ``config['items']``.

    Example:
        >>> config = Config({"training": {"epochs": 10}})
        >>> config.training.epochs, config["training.epochs"], "training.epochs" in config
        (10, 10, True)
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", {} if data is None else data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return _wrap(self._data[name])
        except KeyError:
            raise AttributeError(tree_ops.unknown_key(name, self._data).args[0]) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._data[name] = value

    def __getitem__(self, key: str) -> Any:
        if key in self._data:
            return _wrap(self._data[key])
        node: Any = self._data
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise KeyError(key)
            node = node[part]
        return _wrap(node)

    def __setitem__(self, key: str, value: Any) -> None:
        *parents, leaf = key.split(".")
        node = self._data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Config):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Config({self._data!r})"

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {k for k in self._data if k.isidentifier()})

    def __getstate__(self) -> dict[str, Any]:
        return {"_data": self._data}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", state["_data"])

    def get(self, key: str, default: Any = None) -> Any:
        """The value at ``key`` (dotted keys allowed), or ``default`` when there is none."""
        try:
            return self[key]
        except KeyError:
            return default

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the config as plain nested dicts."""
        return copy.deepcopy(dict(self._data))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as plain YAML (readable by ``yaml.safe_load``), atomically.

        The file is written to a temporary name in the same directory and renamed over ``path``,
        so a reader sees the old file or the new one, never half of one.

        Returns:
            The path written.
        """
        import yaml

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(_plain(self._data), sort_keys=False, allow_unicode=True)
        replace_file(target, text)
        return target


def _wrap(value: Any) -> Any:
    return Config(value) if isinstance(value, dict) else value


def _plain(value: Any) -> Any:
    """Only what plain YAML holds: dicts with str keys, lists, str, numbers, bool, None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def active_config() -> Config | None:
    """The config most recently returned by :func:`parse_config` in this process, if any."""
    return _active


def parse_config(
    argv: list[str] | None = None,
    *,
    defaults: Any = None,
    exit_on_error: bool = True,
) -> Config:
    """Build the run's config from defaults, YAML files and command-line overrides.

    Command line: ``--config FILE`` (or ``-c FILE``, repeatable), ``key.sub=value`` to override a
    known key, ``+key=value`` to add a new one, ``--help`` to list the keys and exit.

    Args:
        argv: the arguments (``sys.argv[1:]`` when None).
        defaults: the lowest layer: a dict, or a dataclass (class or instance) whose field types
            are then enforced.
        exit_on_error: on a mistake in the configuration, print one line to stderr and exit with
            status 2, like argparse; when False, raise :class:`ConfigError` instead.

    Returns:
        The config, also available afterwards from :func:`active_config`.

    Raises:
        ConfigError: a mistake in a file, an override or a value (only with
            ``exit_on_error=False``).
        SystemExit: after ``--help`` (status 0), or on a mistake (status 2).
    """
    global _active
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config = _build(args, defaults)
    except ConfigError as exc:
        if not exit_on_error:
            raise
        _fail(str(exc))
    _active = config
    return config


def _build(args: list[str], defaults: Any) -> Config:
    files, overrides, wants_help = _split_args(args)
    tree, schema = tree_ops.defaults_tree(defaults)
    if schema is not None:
        schema.setdefault("run_id", str | None)
    tree = {"run_id": tree.pop("run_id", None), **tree}
    for file in files:
        from expmate._config_yaml import load_yaml_file

        tree_ops.merge(tree, load_yaml_file(file), schema=schema, source=file)
    for key, text, add in overrides:
        tree_ops.apply_override(tree, schema, key, text, add=add)
    if wants_help:
        _print_help(tree, schema)
        raise SystemExit(0)
    if schema is not None:
        tree_ops.validate(tree, schema)
    tree["run_id"] = _decide_run_id(tree.get("run_id"))
    return Config(tree)


def _split_args(args: list[str]) -> tuple[list[str], list[tuple[str, str, bool]], bool]:
    """(config files, (key, text, add) overrides, whether help was asked for)."""
    files: list[str] = []
    overrides: list[tuple[str, str, bool]] = []
    wants_help = False
    rest = iter(args)
    for arg in rest:
        if arg in ("-h", "--help"):
            wants_help = True
        elif arg in ("-c", "--config"):
            path = next(rest, None)
            if path is None:
                raise ConfigError(f"argument {arg}: expected a file name")
            files.append(path)
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
        elif arg.startswith("-"):
            raise ConfigError(
                f"unrecognized argument '{arg}' (overrides are written key=value, without dashes)"
            )
        elif "=" not in arg:
            raise ConfigError(f"override '{arg}' has no '=' (write {arg}=VALUE)")
        else:
            key, text = arg.split("=", 1)
            add = key.startswith("+")
            overrides.append((key[1:] if add else key, text, add))
    return files, overrides, wants_help


def _decide_run_id(given: Any) -> str:
    if given is not None and not isinstance(given, str):
        given = str(given)
    from expmate.run_id import shared_run_id

    return shared_run_id(given or None)


def _print_help(tree: dict[str, Any], schema: Any) -> None:
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "train.py"
    rows = []
    for key, value, tname in tree_ops.leaves(tree, schema):
        shown = "<generated>" if key == "run_id" and value is None else repr(value)
        rows.append((key, shown, "str" if key == "run_id" else tname))
    width_key = max([len(r[0]) for r in rows] + [3])
    width_value = max([len(r[1]) for r in rows] + [5])
    lines = [f"usage: {prog} {_USAGE}", "", "keys (current value, type):"]
    lines += [f"  {k:<{width_key}}  {v:<{width_value}}  {t}" for k, v, t in rows]
    print("\n".join(lines))


def _fail(message: str) -> NoReturn:
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "parse_config"
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)
