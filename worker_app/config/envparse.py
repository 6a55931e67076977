"""Typed readers for environment variables, each failing with a `ConfigError` that names the variable.

Every configuration module of the package reads the environment through these helpers so that a
bad value always produces the same kind of one-line message: ``NAME: what is wrong``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class ConfigError(ValueError):
    """A configuration value is missing or invalid. `str()` is one line naming the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def env_str(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    """The stripped value, or `default` when unset or blank."""
    value = env.get(name)
    if value is None or not value.strip():
        return default
    return value.strip()


def env_int(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    raw = env_str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
    _check_range(name, value, minimum, maximum)
    return value


def env_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    raw = env_str(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(name, f"expected a finite number, got {raw!r}")
    _check_range(name, value, minimum, maximum)
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False if lowered else default
    raise ConfigError(name, f"expected true or false, got {raw!r}")


def env_list(env: Mapping[str, str], name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A comma-separated list; blanks are dropped, duplicates rejected."""
    raw = env_str(env, name)
    if raw is None:
        return default
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not items:
        return default
    duplicates = sorted({item for item in items if items.count(item) > 1})
    if duplicates:
        raise ConfigError(name, f"lists {', '.join(duplicates)} more than once")
    return items


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env_str(env, name)
    if raw is None:
        return default
    if raw not in choices:
        raise ConfigError(name, f"expected one of {', '.join(choices)}, got {raw!r}")
    return raw


def env_secret_file(env: Mapping[str, str], name: str) -> str | None:
    """The content of the file named by `name` (trailing newline stripped), never echoed in errors."""
    path_text = env_str(env, name)
    if path_text is None:
        return None
    path = Path(path_text)
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(name, f"file {path_text} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(name, f"{path_text} is a directory, expected a file") from None
    except PermissionError:
        raise ConfigError(name, f"file {path_text} is not readable by this user") from None
    except UnicodeDecodeError:
        raise ConfigError(name, f"file {path_text} is not UTF-8 text") from None
    secret = content.rstrip("\r\n")
    if not secret:
        raise ConfigError(name, f"file {path_text} is empty")
    return secret


def _check_range(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(name, f"must be at most {maximum}, got {value}")
