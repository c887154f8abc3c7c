"""Reading configuration files: YAML with a fixed float rule and ``${env:VAR}`` interpolation.

PyYAML follows YAML 1.1, where a float needs a dot: ``lr: 1e-3`` reads as the string ``'1e-3'``.
:func:`config_loader` gives a ``SafeLoader`` whose float resolver also accepts exponents without a dot,
so ``1e-3`` and ``-1e-3`` are floats. PyYAML is imported on first use, not with this module's
callers.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

from expmate._config_values import ConfigError, infer_text

__all__ = ["config_loader", "interpolate_env", "load_yaml_file"]

_FLOAT_TAG = "tag:yaml.org,2002:float"
_FLOAT_RESOLVER = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?:,([^}]*))?\}")


@functools.cache
def config_loader() -> type:
    """The ``SafeLoader`` subclass that reads ``1e-3`` as a float (built once, on first use)."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        """SafeLoader that reads ``1e-3`` as a float."""

    ConfigLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _FLOAT_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    ConfigLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RESOLVER, list("-+0123456789."))
    return ConfigLoader


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read one config file: a mapping at the top (an empty file is an empty mapping).

    Raises:
        ConfigError: the file is missing, unreadable, not valid YAML (with line and column), or
            not a mapping at the top level; or it names an unset environment variable.
    """
    import yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file is a directory: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.load(text, Loader=config_loader())  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}"
        )
    return interpolate_env(data, source=str(path))


def interpolate_env(value: Any, *, source: str, key: str = "", environ: Any = None) -> Any:
    """Replace ``${env:VAR}`` and ``${env:VAR,default}`` in every string of ``value``.

    A string that is exactly one reference takes the type its text reads as (``${env:EPOCHS,10}``
    gives the int 10); a reference inside a longer string is replaced as text.

    Raises:
        ConfigError: a variable is unset and has no default; the message names file, key, variable.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {
            str(k): interpolate_env(
                v, source=source, key=f"{key}.{k}" if key else str(k), environ=env
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            interpolate_env(v, source=source, key=f"{key}[{i}]", environ=env)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str) or "${env:" not in value:
        return value

    def lookup(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return str(env[name])
        if default is not None:
            return default.strip()
        raise ConfigError(
            f"{source}: {key}: environment variable {name} is not set "
            f"(write ${{env:{name},default}} to give a default)"
        )

    whole = _ENV.fullmatch(value.strip())
    if whole is not None:
        return infer_text(lookup(whole), key)
    return _ENV.sub(lookup, value)
