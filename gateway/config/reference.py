"""The configuration reference (``docs/configuration-reference.md``), generated from the settings models.

One table per top-level section: every key as a dotted path, its type, its default, its
environment variable and its description (the models' ``Field(description=...)``).  Keys whose
value is a list or mapping of structured items (``dicom.allowed_callers``, ``routing.rules``,
``destinations``) are one row in their section's table, and their items' keys have a table
of their own.  ``python -m gateway.docgen --write`` puts the tables into the page.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
import yaml
from pydantic import BaseModel, ByteSize
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gateway.config.loading import ENV_DELIMITER, ENV_PREFIX
from gateway.config.pipeline import Condition, Destination, DicomwebDestination, Match, RoutingRule
from gateway.config.settings import AllowedCaller, Settings
from gateway.config.sources import DicomSource, DicomwebSource
from gateway.docgen import markdown_table

#: Item models of list- or mapping-valued keys: (the key as written in the tables, the model, how items are given).
ITEM_MODELS: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("dicom.allowed_callers[]", AllowedCaller, "each item of the list `dicom.allowed_callers`"),
    ("destinations.<name>", Destination, "each destination, under its name (letters, digits, `_`, `.`, `-`)"),
    ("destinations.<name>", DicomwebDestination, "each destination with `type: dicomweb`, under its name"),
    (
        "sources.<dicom-name>",
        DicomSource,
        "each source with `type: dicom` (C-FIND, then C-MOVE or C-GET), under its name",
    ),
    (
        "sources.<dicomweb-name>",
        DicomwebSource,
        "each source with `type: dicomweb` (QIDO-RS, then WADO-RS), under its name",
    ),
    ("routing.rules[]", RoutingRule, "each rule of the ordered list `routing.rules`"),
    (
        "<match>",
        Match,
        "each item of a rule's `match` list, and its `analyze`: conditions on one instance, all of which must hold",
    ),
    (
        "<condition>",
        Condition,
        "one condition of a match; a list or a single string is short for `{in: [...]}`",
    ),
)

#: Longer defaults are shown as YAML below the table, not in it.
_INLINE_DEFAULT_LIMIT = 60


def environment_variable(key: str) -> str:
    """``dicom.timeouts.acse`` -> ``GAZEX_DICOM__TIMEOUTS__ACSE``."""
    return ENV_PREFIX + key.upper().replace(".", ENV_DELIMITER)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The section model of a key that is itself a mapping of keys (not a list or dict of items)."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return None if any(model is annotation for _, model, _ in ITEM_MODELS) else annotation
    if typing.get_origin(annotation) is typing.Annotated:
        return _nested_model(typing.get_args(annotation)[0])
    return None


def type_name(annotation: Any) -> str:  # noqa: PLR0911 - one return per kind of type
    """A reader's name for a field's type: ``integer``, ``list of string``, ``"1.2" or "1.3"``, ``path or null``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        if any(getattr(item, "path_type", None) == "file" for item in args[1:]):
            return "path (an existing file)"
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        names = [type_name(arg) for arg in args if arg is not type(None)]
        text = " or ".join(dict.fromkeys(names))
        return text + " or null" if type(None) in args else text
    if origin is Literal:
        return " or ".join(json.dumps(arg) for arg in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping of name to {type_name(args[1])}"
    simple = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
        ByteSize: "size (bytes, or 500MB, 1GiB, ...)",
    }
    if annotation in simple:
        return simple[annotation]
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        for key, model, _ in ITEM_MODELS:
            if model is annotation:
                return f"mapping ({key})"
        return "mapping"
    raise ValueError(f"no documentation name for the type {annotation!r}; add one in gateway.config.reference")


def _constraints(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            parts.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen) and item.min_length > 0:
            parts.append(f"length ≥ {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            parts.append(f"length ≤ {item.max_length}")
    return ", ".join(parts)


def _default(field: FieldInfo) -> tuple[str, Any]:
    """The default as shown in a table cell, and the plain value (``PydanticUndefined`` when required)."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required", PydanticUndefined
    else:
        value = field.default
    plain = _plain(value)
    text = json.dumps(plain, ensure_ascii=False)
    if len(text) > _INLINE_DEFAULT_LIMIT:
        return "see below", plain
    return f"`{text}`", plain


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, ByteSize):
        return value.human_readable(separator="")
    return value


def _prose(text: str | None) -> str:
    """Text from a docstring or description, safe in Markdown: ``<data_dir>`` is not an HTML tag."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _first_paragraph(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model) or ""
    return _prose(" ".join(doc.split("\n\n", 1)[0].split()).replace("``", "`"))


def _rows(
    model: type[BaseModel], prefix: str, *, environment: bool, long_defaults: list[tuple[str, Any]]
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        nested = _nested_model(field.annotation)
        if nested is not None:
            rows.extend(_rows(nested, key + ".", environment=environment, long_defaults=long_defaults))
            continue
        shown, plain = _default(field)
        if shown == "see below":
            long_defaults.append((key, plain))
        kind = type_name(field.annotation)
        limits = _constraints(field)
        row = [f"`{key}`", kind + (f" ({limits})" if limits else ""), shown]
        if environment:
            row.append(f"`{environment_variable(key)}`")
        row.append(_prose(field.description))
        rows.append(tuple(row))
    return rows


def _long_defaults(defaults: list[tuple[str, Any]]) -> str:
    parts = []
    for key, value in defaults:
        text = yaml.safe_dump({key: value}, sort_keys=False, allow_unicode=True, default_flow_style=False)
        parts.append(f"Default of `{key}`:\n\n```yaml\n{text}```\n")
    return "\n".join(parts)


def section_block(name: str) -> str:
    """The table of one top-level section (its keys, nested sections included)."""
    field = Settings.model_fields[name]
    model = _nested_model(field.annotation)
    long_defaults: list[tuple[str, Any]] = []
    rows: list[tuple[str, ...]]
    if model is None:  # a mapping of items (destinations)
        shown, _ = _default(field)
        rows = [
            (
                f"`{name}`",
                type_name(field.annotation),
                shown,
                f"`{environment_variable(name)}`",
                _prose(field.description),
            )
        ]
        intro = ""
    else:
        rows = _rows(model, name + ".", environment=True, long_defaults=long_defaults)
        intro = _first_paragraph(model) + "\n\n"
    table = markdown_table(["Key", "Type", "Default", "Environment variable", "Description"], rows)
    return intro + table + ("\n" + _long_defaults(long_defaults) if long_defaults else "")


def items_block() -> str:
    """The keys of the items of list- and mapping-valued keys."""
    parts = []
    for key, model, how in ITEM_MODELS:
        long_defaults: list[tuple[str, Any]] = []
        rows = _rows(model, key + ".", environment=False, long_defaults=long_defaults)
        heading = f"`{key}` with `type: dicomweb`" if model is DicomwebDestination else f"`{key}`"
        parts.append(f"### {heading}\n\n{_first_paragraph(model)} Keys of {how}:\n\n")
        parts.append(markdown_table(["Key", "Type", "Default", "Description"], rows))
        if long_defaults:
            parts.append("\n" + _long_defaults(long_defaults))
        parts.append("\n")
    return "".join(parts)


def reference_blocks() -> dict[str, str]:
    """Block name -> Markdown, for ``docs/configuration-reference.md``: one per section, and the items."""
    blocks = {f"section-{name}": section_block(name) for name in Settings.model_fields}
    blocks["items"] = items_block()
    return blocks


def documented_keys() -> list[str]:
    """Every key the reference documents as a dotted path (``dicom.timeouts.acse``), for tests."""
    keys: list[str] = []
    for name, field in Settings.model_fields.items():
        model = _nested_model(field.annotation)
        if model is None:
            keys.append(name)
        else:
            keys.extend(row[0].strip("`") for row in _rows(model, name + ".", environment=True, long_defaults=[]))
    return keys
