"""Compose's variable interpolation, as ``docker compose config`` applies it before validating.

Supported, as in the Compose specification: ``$$`` (a literal ``$``), ``$VAR``, ``${VAR}``,
``${VAR:-default}`` / ``${VAR-default}`` (default when unset or empty / unset),
``${VAR:?message}`` / ``${VAR?message}`` (an error when unset or empty / unset) and
``${VAR:+other}`` / ``${VAR+other}``.  Values are interpolated; mapping keys are not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A required variable is unset (``${VAR:?message}``) or the syntax is wrong."""


def interpolate_text(text: str, env: Mapping[str, str], used: set[str] | None = None) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("plain")
        if used is not None:
            used.add(name)
        op, arg = match.group("op"), match.group("arg") or ""
        return _apply(name, op, arg, env.get(name))

    result = _TOKEN.sub(replace, text)
    if "${" in result.replace("$${", ""):
        raise InterpolationError(f"cannot interpolate {text!r}")
    return result


def _apply(name: str, op: str | None, arg: str, value: str | None) -> str:
    """One ``${NAME<op><arg>}`` with the variable's value (None: unset)."""
    empty = value is None or value == ""
    if op in (":?", "?") and (empty if op == ":?" else value is None):
        raise InterpolationError(f"{name}: {arg}")
    if op in (":-", "-"):
        missing = empty if op == ":-" else value is None
        return arg if missing else str(value)
    if op in (":+", "+"):
        present = not empty if op == ":+" else value is not None
        return arg if present else ""
    return value or ""


def interpolate(value: Any, env: Mapping[str, str], used: set[str] | None = None) -> Any:
    """``value`` (parsed YAML) with every string interpolated."""
    if isinstance(value, str):
        return interpolate_text(value, env, used)
    if isinstance(value, list):
        return [interpolate(item, env, used) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, env, used) for key, item in value.items()}
    return value


def read_env_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of a ``.env`` file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"not KEY=VALUE: {raw!r}")
        values[key.strip()] = value.strip().strip("'\"")
    return values
