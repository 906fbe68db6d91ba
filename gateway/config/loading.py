"""Build :class:`Settings` from defaults, a YAML file, ``GAZEX_*`` variables and flags.

Priority, lowest first: the embedded defaults, the YAML file, environment variables
(``GAZEX_<SECTION>__<KEY>``, lists and mappings as JSON), command-line flags.  Every problem
is reported at once, each naming the key, the value, where it came from and what is allowed.
"""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_settings import EnvSettingsSource, SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from gateway.config.pipeline import DESTINATION_TYPES
from gateway.config.settings import Settings

ENV_PREFIX = "GAZEX_"
ENV_DELIMITER = "__"


class ConfigError(Exception):
    """The configuration is wrong; the message lists every problem and where it is."""


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Validate the layered configuration; raise :class:`ConfigError` naming every bad key.

    ``overrides`` holds command-line flags as a nested mapping (``{"dicom": {"port": 104}}``).
    ``environ`` defaults to ``os.environ``.
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    if config_file is not None:
        layers.append((str(config_file), read_config_file(config_file)))
    environ = os.environ if environ is None else environ
    env_values = environment_values(environ)
    variables = frozenset(key.upper() for key in settings_variables(environ))
    if env_values:
        layers.append(("environment", env_values))
    if overrides:
        layers.append(("command line", _plain(overrides)))
    merged: dict[str, Any] = {}
    for _, values in layers:
        merged = deep_merge(merged, values)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, layers, config_file, variables)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path``; an empty file is an empty mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} does not exist; create one with: gazex config example > {path}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"configuration file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"configuration file {path} must hold a mapping of sections (dicom:, storage:, database:), "
            f"not a {type(data).__name__}"
        )
    return data


def settings_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that are settings: ``GAZEX_<SECTION>__<KEY>`` (any section name, so that a
    misspelt one is reported) and ``GAZEX_<SECTION>`` for a section that exists (a JSON mapping
    of the whole section).  Other ``GAZEX_*`` variables (``GAZEX_CONFIG``, the test suite's) are not settings.
    """
    relevant = {}
    for key, value in environ.items():
        if not key.upper().startswith(ENV_PREFIX):
            continue
        rest = key[len(ENV_PREFIX) :]
        if ENV_DELIMITER in rest or rest.lower() in Settings.model_fields:
            relevant[key] = value
    return relevant


def environment_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """The nested values that ``GAZEX_<SECTION>__<KEY>`` and ``GAZEX_<SECTION>`` variables set
    (parsed by pydantic-settings); raises :class:`ConfigError` for one that cannot be applied."""
    relevant = settings_variables(environ)
    if not relevant:
        return {}
    problems = [
        problem
        for key, value in sorted(relevant.items())
        if ENV_DELIMITER not in key[len(ENV_PREFIX) :] and (problem := _whole_section_problem(key, value))
    ]
    if problems:
        raise ConfigError("environment: " + "; ".join(problems))
    try:
        values: dict[str, Any] = _EnvironmentSource(relevant)()
    except SettingsError as exc:  # pragma: no cover - the checks above catch what pydantic-settings refuses
        raise ConfigError(f"environment: {exc}") from None
    unknown = sorted(
        key
        for key in relevant
        if key[len(ENV_PREFIX) :].split(ENV_DELIMITER, 1)[0].lower() not in Settings.model_fields
    )
    if unknown:
        raise ConfigError(
            "environment: "
            + "; ".join(
                f"{key} names no settings section (allowed: {', '.join(_env_names(Settings))})" for key in unknown
            )
        )
    return values


_JSON_KINDS = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _whole_section_problem(key: str, value: str) -> str | None:
    """Why ``GAZEX_<SECTION>=value`` cannot set its section (it takes a JSON mapping), or None."""
    section = key[len(ENV_PREFIX) :].upper()
    example = f"{ENV_PREFIX}{section}__<KEY>=value"
    if section == "DESTINATIONS":
        example = (
            f"""{key}='{{"archive": {{"ae_title": "ARCHIVE", "host": "pacs.example", "port": 104}}}}' """
            f"or {ENV_PREFIX}DESTINATIONS__ARCHIVE__HOST=pacs.example (and __AE_TITLE, __PORT)"
        )
    if not value.strip():
        return (
            f"{key} is set but empty, so it sets nothing; give the section as a JSON mapping, or unset it ({example})"
        )
    try:
        parsed = json.loads(value)
    except ValueError:
        return (
            f"{key} = {_short(value)} is not JSON; it sets the whole {section.lower()} section as a JSON mapping "
            f"({example})"
        )
    if not isinstance(parsed, dict):
        return (
            f"{key} = {_short(value)} is a JSON {_JSON_KINDS.get(type(parsed), 'value')}, not a mapping, "
            f"so it sets nothing; give the {section.lower()} section as a JSON mapping ({example})"
        )
    return None


class _EnvironmentSource(EnvSettingsSource):
    """pydantic-settings' environment parsing, over a given mapping instead of ``os.environ``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(
            Settings,
            case_sensitive=False,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter=ENV_DELIMITER,
            env_parse_none_str="null",
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` laid over ``base``; nested mappings merge, everything else replaces."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_errors(
    exc: ValidationError,
    layers: list[tuple[str, dict[str, Any]]],
    config_file: Path | None,
    variables: frozenset[str] = frozenset(),
) -> str:
    """One line per problem: the key, the value, where it was set, what is wrong and what is allowed.

    ``variables`` are the settings variables set (upper case), to name the one that set a value.
    """
    where = f" ({config_file})" if config_file is not None else ""
    lines = [f"invalid configuration{where}:"]
    for error in exc.errors(include_url=False):
        tagged = tuple(error["loc"])
        loc = _untagged(tagged)
        key = _dotted(loc)
        origin = _origin(loc, layers, variables)
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(tagged[:-1])
            lines.append(
                f"  - {key}: unknown key (set {origin} to {_short(error['input'])}); "
                f"allowed keys here: {', '.join(allowed)}"
            )
            continue
        if error["type"] == "missing" and len(loc) > 1:
            parent = _dotted(loc[:-1])
            lines.append(f"  - {key}: required, not set ({parent} is set {_origin(loc[:-1], layers, variables)})")
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        if isinstance(value, (dict, list)) and error["type"] == "value_error":
            lines.append(f"  - {key or 'settings'} (set {origin}): {message}")
        else:
            lines.append(f"  - {key or 'settings'} = {_short(value)} (set {origin}): {message}")
    return "\n".join(lines)


def _untagged(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``destinations.NAME.dicomweb.base_url`` -> ``destinations.NAME.base_url``: pydantic names the
    destination type it tried (the union's tag) in the location; the YAML has no such level."""
    if len(loc) > 2 and loc[0] == "destinations" and loc[2] in DESTINATION_TYPES:
        return loc[:2] + loc[3:]
    return loc


def _dotted(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _origin(loc: tuple[Any, ...], layers: list[tuple[str, dict[str, Any]]], variables: frozenset[str]) -> str:
    """Which layer set the value at ``loc`` (the highest-priority one that has it)."""
    for name, values in reversed(layers):
        node: Any = values
        variable: list[str] = []  # the mapping keys before any list: the environment variable's parts
        in_list = False
        depth = 0
        for part in loc:
            if isinstance(node, Mapping) and part in node:
                node = node[part]
                if not in_list:
                    variable.append(str(part))
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
                in_list = True
            else:
                break
            depth += 1
        if depth == 0 or (depth < len(loc) and isinstance(node, Mapping)):
            continue  # this layer does not hold the value
        if name == "environment":
            names = [
                ENV_PREFIX + ENV_DELIMITER.join(part.upper() for part in variable[:n])
                for n in range(len(variable), 0, -1)
            ]
            below = sorted(v for v in variables if v.startswith(names[0] + ENV_DELIMITER))  # set key by key
            return "by environment variable " + next((n for n in names if n in variables), ", ".join(below) or names[0])
        if name == "command line":
            return "on the command line"
        return f"in {name}"
    return "by default"


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class inside an annotation such as ``list[X]``, ``X | None`` or ``Annotated[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None:
        return None
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _unwrap_model(args[0])
    if origin in (list, tuple, typing.Union, types.UnionType):
        for arg in args:
            model = _unwrap_model(arg)
            if model is not None:
                return model
    return None


def _mapping_values(annotation: Any) -> Any:
    """The value type of ``dict[str, X]`` (also inside ``Annotated``), else None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _mapping_values(typing.get_args(annotation)[0])
    return typing.get_args(annotation)[-1] if origin is dict else None


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] | None = Settings
    mapping_key = False  # the next part is a key of a mapping of models (destinations.NAME)
    for part in parent:
        if isinstance(part, int):
            continue
        if mapping_key:  # the name of an item of a mapping (destinations.NAME)
            mapping_key = False
            continue
        if parent[:1] == ("destinations",) and str(part) in DESTINATION_TYPES:  # the union's tag: that type's keys
            model = DESTINATION_TYPES[str(part)]
            continue
        if model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            model = None
            continue
        values = _mapping_values(field.annotation)
        mapping_key = values is not None
        model = _unwrap_model(values if values is not None else field.annotation)
    return sorted(model.model_fields) if model is not None else []


def _env_names(model: type[BaseModel]) -> list[str]:
    return [ENV_PREFIX + name.upper() + ENV_DELIMITER + "..." for name in model.model_fields]


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _plain(value) if isinstance(value, Mapping) else value for key, value in values.items()}
