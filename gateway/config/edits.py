"""Edits of the live configuration document: pure functions, one per change IT can make.

The document is :func:`gateway.config.live.managed_document`'s JSON mapping::

    {"dicom": {"ae_titles": [...], "allowed_callers": [...], "require_called_ae_title": bool,
               "reject_unknown_callers": bool},
     "destinations": {NAME: {...}},
     "routing": {"rules": [{"name": ..., ...}, ...]}}

Each function takes a document and returns a new one; the input is never changed.  The
functions check what only an edit can know (an index or name that does not exist, a duplicate
caller, a destination still named by a rule); the values themselves are validated afterwards
by the settings models (:func:`gateway.config.live.settings_with`).  Use them with
:meth:`gateway.config.live.LiveSettings.apply`::

    live.apply(lambda doc: edits.add_caller(doc, {"ae_title": "MODALITY1", "host": "10.0.0.7"}),
               actor="alice", summary="allow MODALITY1")
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ValidationError

from gateway.config.settings import AllowedCaller

#: How an edit failed, for the HTTP API: 404, 409 and 422.
ErrorKind = Literal["not_found", "conflict", "invalid"]


class EditError(Exception):
    """An edit that cannot be made; ``kind`` is ``not_found``, ``conflict`` or ``invalid``."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message


Document = dict[str, Any]


def _copy(document: Mapping[str, Any]) -> Document:
    result = copy.deepcopy(dict(document))
    result.setdefault("dicom", {})
    result.setdefault("destinations", {})
    result.setdefault("routing", {}).setdefault("rules", [])
    return result


def _mapping(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise EditError("invalid", f"{what} must be a JSON object, not {type(body).__name__}")
    return dict(body)


# -- our AE titles and the admission flags --------------------------------------------------


def set_ae_titles(document: Mapping[str, Any], titles: list[str]) -> Document:
    """Our AE titles (the first is the main one)."""
    if not isinstance(titles, list):
        raise EditError("invalid", f"dicom.ae_titles must be a list of AE titles, not {type(titles).__name__}")
    result = _copy(document)
    result["dicom"]["ae_titles"] = list(titles)
    return result


def set_flags(
    document: Mapping[str, Any],
    *,
    require_called_ae_title: bool | None = None,
    reject_unknown_callers: bool | None = None,
) -> Document:
    """``dicom.require_called_ae_title`` and ``dicom.reject_unknown_callers``; None leaves a flag as it is."""
    result = _copy(document)
    for key, value in (
        ("require_called_ae_title", require_called_ae_title),
        ("reject_unknown_callers", reject_unknown_callers),
    ):
        if value is None:
            continue
        if not isinstance(value, bool):
            raise EditError("invalid", f"dicom.{key} must be true or false, not {value!r}")
        result["dicom"][key] = value
    return result


# -- allowed callers ------------------------------------------------------------------------


def _caller_key(body: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """The caller's (ae_title, host) as validated, or None when it does not validate (reported later)."""
    try:
        caller = AllowedCaller.model_validate(body)
    except ValidationError:
        return None
    return caller.ae_title, caller.host


def _callers(document: Document) -> list[Any]:
    callers = document["dicom"].setdefault("allowed_callers", [])
    if not isinstance(callers, list):  # pragma: no cover - a validated document always has a list
        raise EditError("invalid", "dicom.allowed_callers must be a list")
    return callers


def _check_index(callers: list[Any], index: int) -> None:
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(callers):
        raise EditError(
            "not_found",
            f"there is no allowed caller at index {index!r}: the indexes are 0 to {len(callers) - 1}"
            if callers
            else f"there is no allowed caller at index {index!r}: no callers are configured",
        )


def _refuse_duplicate(callers: list[Any], body: Mapping[str, Any], skip: int | None = None) -> None:
    key = _caller_key(body)
    if key is None:
        return
    for index, other in enumerate(callers):
        if index != skip and isinstance(other, Mapping) and _caller_key(other) == key:
            ae_title, host = key
            raise EditError(
                "conflict",
                f"dicom.allowed_callers[{index}] already allows {ae_title!r} from {host or 'any host'}; "
                "change that entry instead",
            )


def add_caller(document: Mapping[str, Any], body: Mapping[str, Any]) -> Document:
    """Append an allowed caller (``{"ae_title": ..., "host": ...}``); a duplicate is refused."""
    result = _copy(document)
    callers = _callers(result)
    body = _mapping(body, "an allowed caller")
    _refuse_duplicate(callers, body)
    callers.append(body)
    return result


def update_caller(document: Mapping[str, Any], index: int, body: Mapping[str, Any]) -> Document:
    """Replace the allowed caller at ``index`` (0-based)."""
    result = _copy(document)
    callers = _callers(result)
    _check_index(callers, index)
    body = _mapping(body, "an allowed caller")
    _refuse_duplicate(callers, body, skip=index)
    callers[index] = body
    return result


def remove_caller(document: Mapping[str, Any], index: int) -> Document:
    """Remove the allowed caller at ``index`` (0-based); the later ones move up by one."""
    result = _copy(document)
    callers = _callers(result)
    _check_index(callers, index)
    del callers[index]
    return result


# -- destinations ------------------------------------------------------------------------------


def _rules(document: Document) -> list[Any]:
    rules = document["routing"]["rules"]
    if not isinstance(rules, list):  # pragma: no cover - a validated document always has a list
        raise EditError("invalid", "routing.rules must be a list")
    return rules


def put_destination(document: Mapping[str, Any], name: str, body: Mapping[str, Any]) -> Document:
    """Create or replace destination ``name``."""
    result = _copy(document)
    result["destinations"][name] = _mapping(body, f"destination {name!r}")
    return result


def delete_destination(document: Mapping[str, Any], name: str) -> Document:
    """Remove destination ``name``; refused while a routing rule names it."""
    result = _copy(document)
    if name not in result["destinations"]:
        raise EditError("not_found", f"there is no destination {name!r} (configured: {_names(result['destinations'])})")
    naming = [
        str(rule.get("name"))
        for rule in _rules(result)
        if isinstance(rule, Mapping) and name in (rule.get("destinations") or ())
    ]
    if naming:
        raise EditError(
            "conflict",
            f"destination {name!r} is named by routing rule(s) {', '.join(naming)}; "
            "remove it from their destinations first",
        )
    del result["destinations"][name]
    return result


# -- routing rules -----------------------------------------------------------------------------


def _rule_index(rules: list[Any], name: str) -> int | None:
    for index, rule in enumerate(rules):
        if isinstance(rule, Mapping) and rule.get("name") == name:
            return index
    return None


def _names(items: Any) -> str:
    return ", ".join(str(item) for item in items) or "none"


def _rule_names(rules: list[Any]) -> str:
    return _names(rule.get("name") for rule in rules if isinstance(rule, Mapping))


def put_rule(document: Mapping[str, Any], name: str, body: Mapping[str, Any], position: int | None = None) -> Document:
    """Create or replace routing rule ``name``.

    A rule that exists keeps its place unless ``position`` is given; a new one is appended, or
    inserted at ``position`` (0-based: 0 is tried first).  ``body["name"]``, if given, must be ``name``.
    """
    result = _copy(document)
    rules = _rules(result)
    rule = _mapping(body, f"routing rule {name!r}")
    if rule.setdefault("name", name) != name:
        raise EditError(
            "invalid", f"the rule's name {rule['name']!r} differs from {name!r}; rename by deleting and adding it"
        )
    index = _rule_index(rules, name)
    if index is not None:
        rules[index] = rule
        if position is None:
            return result
        del rules[index]
    if position is None:
        rules.append(rule)
    else:
        _check_position(position, len(rules) + 1)
        rules.insert(position, rule)
    return result


def delete_rule(document: Mapping[str, Any], name: str) -> Document:
    """Remove routing rule ``name``."""
    result = _copy(document)
    rules = _rules(result)
    index = _rule_index(rules, name)
    if index is None:
        raise EditError("not_found", f"there is no routing rule {name!r} (configured: {_rule_names(rules)})")
    del rules[index]
    return result


def move_rule(document: Mapping[str, Any], name: str, position: int) -> Document:
    """Move routing rule ``name`` to ``position`` (0-based: 0 is tried first)."""
    result = _copy(document)
    rules = _rules(result)
    index = _rule_index(rules, name)
    if index is None:
        raise EditError("not_found", f"there is no routing rule {name!r} (configured: {_rule_names(rules)})")
    _check_position(position, len(rules))
    rules.insert(position, rules.pop(index))
    return result


def _check_position(position: int, count: int) -> None:
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < count:
        raise EditError("invalid", f"position must be from 0 to {count - 1}, not {position!r}")
