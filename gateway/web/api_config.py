"""The live configuration over the API: our AE titles, the admission flags, the allowed callers,
the destinations and the routing rules (reads: viewer; changes: admin).

Each change is a pure edit of :mod:`gateway.config.edits` applied with
:meth:`gateway.config.live.LiveSettings.apply`: validated by the same models as the YAML,
stored as the next revision (with who, from where, before and after for the audit trail) and
in force for the next association, routing decision and delivery, without a restart.  A
refused change stores nothing and answers ``{"detail": ..., "problems": [...]}`` with 404 (no
such item), 409 (conflict), 412 (``If-Match`` names an older revision) or 422 (invalid).

Items have the YAML's shape, so what a GET returns can be changed and PUT back; destinations
carry their ``name``, callers are addressed by their 0-based index, rules by name and tried in
list order.  Every answer names the ``revision`` it shows (also as the ``ETag``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from gateway.accounts import Principal
from gateway.config import edits
from gateway.config.edits import EditError
from gateway.config.live import ConfigRejected, LiveSettings, managed_document, settings_with
from gateway.config.pipeline import DESTINATION_TYPES, RoutingRule
from gateway.config.settings import AllowedCaller
from gateway.web.auth import client_address, context_of, require
from gateway.web.context import live_settings

Viewer = Annotated[Principal, require("viewer")]
Admin = Annotated[Principal, require("admin")]

IF_MATCH_DESCRIPTION = (
    'Optional concurrency guard: the revision you read (the ETag of a GET, e.g. "12"). When the '
    "configuration changed since, the change is refused with 412 and nothing is stored; read again and retry."
)
IfMatch = Annotated[str | None, Header(alias="If-Match", description=IF_MATCH_DESCRIPTION)]

_STATUS = {"not_found": 404, "conflict": 409, "invalid": 422}


class Refused(Exception):  # noqa: N818 - an answer, not a failure of ours
    """A refused request: answered ``status`` with ``{"detail": message, "problems": [...]}``."""

    def __init__(self, status: int, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or [message]


class ConfigRoute(APIRoute):
    """Answers :class:`Refused` with its status, message and problems."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except Refused as exc:
                return JSONResponse({"detail": exc.message, "problems": exc.problems}, status_code=exc.status)
            return response

        return answer


router = APIRouter(prefix="/api/v1/config", tags=["configuration"], route_class=ConfigRoute)


# -- request bodies -----------------------------------------------------------------------------


def _inline(schema: Any, definitions: Mapping[str, Any]) -> Any:
    """``schema`` with its ``$ref``s to ``definitions`` replaced by the definitions (for openapi_extra)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline(value, definitions) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inline(item, definitions) for item in schema]
    return schema


def _schema(model: type[BaseModel], *, optional_name: bool = False) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    found: dict[str, Any] = _inline(schema, schema.get("$defs", {}))
    if optional_name:
        found["properties"] = {
            "name": {"type": "string", "description": "optional; when given, the name in the path"},
            **found["properties"],
        }
        found["required"] = [key for key in found.get("required", []) if key != "name"]
    return found


def _body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


async def json_body(request: Request) -> Any:
    """The request's JSON body (any JSON value), or 422 naming what is wrong with it."""
    raw = await request.body()
    if not raw.strip():
        raise Refused(422, "the request needs a JSON body")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Refused(422, f"the body is not valid JSON: {exc}") from None


JsonBody = Annotated[Any, Depends(json_body)]


def _json_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refused(422, f"{what} must be a JSON object, not {type(body).__name__}")
    return body


def _validated(model: type[Any], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or "body"
            message = str(error["msg"])
            if error["type"] == "extra_forbidden":
                allowed = ", ".join(model.model_fields)
                message = f"unknown field; allowed: {allowed}"
            problems.append(f"{where}: {message}")
        raise Refused(422, "the request is refused: " + "; ".join(problems), problems) from None


class AeTitlesIn(BaseModel):
    """Our AE titles; the first is the main one."""

    model_config = ConfigDict(extra="forbid")
    ae_titles: list[str] = Field(description="our AE titles, each 1 to 16 characters")


class AdmissionIn(BaseModel):
    """Either flag or both; an omitted flag stays as it is."""

    model_config = ConfigDict(extra="forbid")
    require_called_ae_title: StrictBool | None = Field(
        default=None, description="reject associations whose called AE title is not one of ours"
    )
    reject_unknown_callers: StrictBool | None = Field(
        default=None, description="reject callers that match no allowed caller"
    )


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    position: StrictInt = Field(description="0-based: 0 is tried first")


# -- answers ------------------------------------------------------------------------------------


class ConfigOut(BaseModel):
    """One revision of the live configuration."""

    revision: int
    created_at: datetime
    actor: str = Field(description="who stored it ('seed': the configuration file at first start)")
    summary: str
    document: dict[str, Any] = Field(description="the managed sections: dicom (the live keys), destinations, routing")


class HistoryOut(BaseModel):
    items: list[ConfigOut] = Field(description="newest first")


class AeTitlesOut(BaseModel):
    revision: int
    ae_titles: list[str]


class AdmissionOut(BaseModel):
    revision: int
    require_called_ae_title: bool
    reject_unknown_callers: bool


class CallersOut(BaseModel):
    revision: int
    items: list[dict[str, Any]] = Field(description="{ae_title, host}; an item's index is its place in this list")


class CallerOut(BaseModel):
    revision: int
    index: int
    item: dict[str, Any]


class DestinationsOut(BaseModel):
    revision: int
    items: list[dict[str, Any]] = Field(description="each destination with its name")


class DestinationOut(BaseModel):
    revision: int
    item: dict[str, Any]


class RulesOut(BaseModel):
    revision: int
    items: list[dict[str, Any]] = Field(description="in the order they are tried: the first that takes a study wins")


class RuleOut(BaseModel):
    revision: int
    position: int = Field(description="0-based place in the order")
    item: dict[str, Any]


# -- reading and changing -------------------------------------------------------------------------


def _live(request: Request) -> LiveSettings:
    return live_settings(context_of(request))


def _newest(request: Request, response: Response) -> tuple[int, dict[str, Any], Any]:
    """(revision, document, the revision's record) of the newest revision; sets the ETag."""
    newest = _live(request).history(1)[0]
    response.headers["ETag"] = f'"{newest.revision}"'
    return newest.revision, newest.document, newest


def _expected_revision(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise Refused(400, f'If-Match must be a revision number (the ETag of a GET, e.g. "12"), not {if_match!r}')
    return int(value)


class _Stale(Exception):  # noqa: N818 - internal signal
    pass


def _change(
    request: Request,
    response: Response,
    principal: Principal,
    if_match: str | None,
    edit: Callable[[dict[str, Any]], dict[str, Any]],
    summary: str,
) -> tuple[int, dict[str, Any]]:
    """Apply ``edit``; (the revision now in force, its document).  Refusals raise :class:`Refused`."""
    live = _live(request)
    expected = _expected_revision(if_match)
    snapshot: dict[str, Any] | None = None
    if expected is not None:
        newest = live.history(1)[0]
        if newest.revision != expected:
            raise _precondition_failed(expected, newest.revision)
        snapshot = newest.document
    edited: dict[str, Any] = {}

    def guarded(document: dict[str, Any]) -> dict[str, Any]:
        if snapshot is not None and document != snapshot:
            raise _Stale
        result = edit(document)
        edited["document"] = result
        return result

    try:
        change = live.apply(guarded, actor=principal.username, summary=summary, address=client_address(request))
    except _Stale:
        raise _precondition_failed(expected or 0, live.history(1)[0].revision) from None
    except ConfigRejected as exc:
        raise Refused(422, str(exc), exc.problems) from None
    except EditError as exc:
        raise Refused(_STATUS.get(exc.kind, 422), exc.message) from None
    document = managed_document(settings_with(live.base, edited["document"]))  # as stored
    response.headers["ETag"] = f'"{change.revision}"'
    return change.revision, document


def _precondition_failed(expected: int, newest: int) -> Refused:
    return Refused(
        412,
        f"the configuration changed since revision {expected} (it is now revision {newest}); "
        "nothing was stored: read it again and retry",
    )


def _caller_text(body: Mapping[str, Any]) -> str:
    return f"{body.get('ae_title')} from {body.get('host') or 'any host'}"


def _destination_item(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {"name": name, **document["destinations"][name]}


def _rule_at(document: Mapping[str, Any], name: str) -> tuple[int, dict[str, Any]] | None:
    for position, rule in enumerate((document.get("routing") or {}).get("rules") or []):
        if isinstance(rule, dict) and rule.get("name") == name:
            return position, rule
    return None


def _named_body(body: Any, name: str, what: str) -> dict[str, Any]:
    """The body without its optional ``name``, which must be ``name``."""
    found = dict(_json_object(body, what))
    given = found.pop("name", name)
    if given != name:
        raise Refused(
            422, f"the body's name {given!r} differs from {name!r} in the path; rename by deleting and adding"
        )
    return found


# -- the whole configuration ---------------------------------------------------------------------


def _config_out(record: Any) -> ConfigOut:
    return ConfigOut(
        revision=record.revision,
        created_at=record.created_at,
        actor=record.actor,
        summary=record.summary,
        document=record.document,
    )


@router.get("", summary="The live configuration (AE titles, callers, admission, destinations, rules) and its revision")
def get_config(request: Request, response: Response, principal: Viewer) -> ConfigOut:
    return _config_out(_newest(request, response)[2])


@router.get("/history", summary="The newest revisions of the live configuration: who changed what, when")
def config_history(request: Request, principal: Viewer, limit: Annotated[int, Query(ge=1, le=500)] = 20) -> HistoryOut:
    return HistoryOut(items=[_config_out(record) for record in _live(request).history(limit)])


# -- our AE titles and admission --------------------------------------------------------------------


@router.get("/ae-titles", summary="Our AE titles (the first is the main one)")
def get_ae_titles(request: Request, response: Response, principal: Viewer) -> AeTitlesOut:
    revision, document, _ = _newest(request, response)
    return AeTitlesOut(revision=revision, ae_titles=document["dicom"]["ae_titles"])


@router.put(
    "/ae-titles",
    summary="Set our AE titles; new associations are admitted by the new ones",
    openapi_extra=_body(AeTitlesIn.model_json_schema(), "our AE titles"),
)
def put_ae_titles(
    request: Request, response: Response, principal: Admin, body: JsonBody, if_match: IfMatch = None
) -> AeTitlesOut:
    titles = _validated(AeTitlesIn, body).ae_titles
    revision, document = _change(
        request,
        response,
        principal,
        if_match,
        lambda doc: edits.set_ae_titles(doc, titles),
        f"our AE titles: {', '.join(titles)}",
    )
    return AeTitlesOut(revision=revision, ae_titles=document["dicom"]["ae_titles"])


def _admission(revision: int, document: Mapping[str, Any]) -> AdmissionOut:
    dicom = document["dicom"]
    return AdmissionOut(
        revision=revision,
        require_called_ae_title=dicom["require_called_ae_title"],
        reject_unknown_callers=dicom["reject_unknown_callers"],
    )


@router.get("/admission", summary="Whether unknown callers and unknown called AE titles are rejected")
def get_admission(request: Request, response: Response, principal: Viewer) -> AdmissionOut:
    revision, document, _ = _newest(request, response)
    return _admission(revision, document)


@router.patch(
    "/admission",
    summary="Change require_called_ae_title and/or reject_unknown_callers",
    openapi_extra=_body(AdmissionIn.model_json_schema(), "the flags to change"),
)
def patch_admission(
    request: Request, response: Response, principal: Admin, body: JsonBody, if_match: IfMatch = None
) -> AdmissionOut:
    flags = _validated(AdmissionIn, body)
    given = flags.model_dump(exclude_none=True)
    if not given:
        raise Refused(422, "give require_called_ae_title and/or reject_unknown_callers (true or false)")
    revision, document = _change(
        request,
        response,
        principal,
        if_match,
        lambda doc: edits.set_flags(doc, **given),
        "admission: " + ", ".join(f"{key}={str(value).lower()}" for key, value in given.items()),
    )
    return _admission(revision, document)


# -- allowed callers ---------------------------------------------------------------------------------

_CALLER_BODY = _body(_schema(AllowedCaller), "an allowed caller: its AE title ('*': any) and optionally its host")


@router.get("/callers", summary="The callers allowed to send to us (AE title, optional host, IP or CIDR)")
def list_callers(request: Request, response: Response, principal: Viewer) -> CallersOut:
    revision, document, _ = _newest(request, response)
    return CallersOut(revision=revision, items=document["dicom"]["allowed_callers"])


@router.post(
    "/callers",
    status_code=201,
    summary="Allow a caller; its next association is admitted at once",
    openapi_extra=_CALLER_BODY,
)
def add_caller(
    request: Request, response: Response, principal: Admin, body: JsonBody, if_match: IfMatch = None
) -> CallerOut:
    caller = _json_object(body, "an allowed caller")
    revision, document = _change(
        request,
        response,
        principal,
        if_match,
        lambda doc: edits.add_caller(doc, caller),
        f"allow caller {_caller_text(caller)}",
    )
    callers = document["dicom"]["allowed_callers"]
    return CallerOut(revision=revision, index=len(callers) - 1, item=callers[-1])


@router.put("/callers/{index}", summary="Replace the allowed caller at a 0-based index", openapi_extra=_CALLER_BODY)
def update_caller(
    index: int, request: Request, response: Response, principal: Admin, body: JsonBody, if_match: IfMatch = None
) -> CallerOut:
    caller = _json_object(body, "an allowed caller")
    revision, document = _change(
        request,
        response,
        principal,
        if_match,
        lambda doc: edits.update_caller(doc, index, caller),
        f"allowed caller #{index}: {_caller_text(caller)}",
    )
    return CallerOut(revision=revision, index=index, item=document["dicom"]["allowed_callers"][index])


@router.delete(
    "/callers/{index}", summary="Stop allowing the caller at a 0-based index (the later ones move up by one)"
)
def remove_caller(
    index: int, request: Request, response: Response, principal: Admin, if_match: IfMatch = None
) -> CallerOut:
    removed: dict[str, Any] = {}

    def edit(document: dict[str, Any]) -> dict[str, Any]:
        result = edits.remove_caller(document, index)
        removed.update(document["dicom"]["allowed_callers"][index])
        return result

    revision, _ = _change(request, response, principal, if_match, edit, f"remove allowed caller #{index}")
    return CallerOut(revision=revision, index=index, item=removed)


# -- destinations -------------------------------------------------------------------------------------

_DESTINATION_BODY = _body(
    {
        "oneOf": [_schema(model, optional_name=True) for model in DESTINATION_TYPES.values()],
        "description": "type dicom (C-STORE, the default when type is left out) or dicomweb (STOW-RS)",
    },
    "a destination (an archive that receives our results); TLS and secret files are paths on the gateway",
)


@router.get("/destinations", summary="The destinations our results are sent to")
def list_destinations(request: Request, response: Response, principal: Viewer) -> DestinationsOut:
    revision, document, _ = _newest(request, response)
    return DestinationsOut(revision=revision, items=[_destination_item(document, n) for n in document["destinations"]])


@router.get("/destinations/{name}", summary="One destination")
def get_destination(name: str, request: Request, response: Response, principal: Viewer) -> DestinationOut:
    revision, document, _ = _newest(request, response)
    if name not in document["destinations"]:
        configured = ", ".join(document["destinations"]) or "none"
        raise Refused(404, f"there is no destination {name!r} (configured: {configured})")
    return DestinationOut(revision=revision, item=_destination_item(document, name))


@router.put(
    "/destinations/{name}",
    summary="Create (201) or replace (200) a destination; the next delivery uses it",
    openapi_extra=_DESTINATION_BODY,
    responses={201: {"description": "created", "model": DestinationOut}},
)
def put_destination(
    name: str, request: Request, response: Response, principal: Admin, body: JsonBody, if_match: IfMatch = None
) -> DestinationOut:
    destination = _named_body(body, name, f"destination {name!r}")
    existed: list[bool] = []

    def edit(document: dict[str, Any]) -> dict[str, Any]:
        existed[:] = [name in document["destinations"]]
        return edits.put_destination(document, name, destination)

    revision, document = _change(request, response, principal, if_match, edit, f"destination {name}")
    if not existed[0]:
        response.status_code = 201
    return DestinationOut(revision=revision, item=_destination_item(document, name))


@router.delete("/destinations/{name}", summary="Remove a destination (refused while a routing rule names it)")
def delete_destination(
    name: str, request: Request, response: Response, principal: Admin, if_match: IfMatch = None
) -> DestinationOut:
    removed: dict[str, Any] = {}

    def edit(document: dict[str, Any]) -> dict[str, Any]:
        result = edits.delete_destination(document, name)
        removed.update(_destination_item(document, name))
        return result

    revision, _ = _change(request, response, principal, if_match, edit, f"remove destination {name}")
    return DestinationOut(revision=revision, item=removed)


# -- routing rules ---------------------------------------------------------------------------------------

_RULE_BODY = _body(_schema(RoutingRule, optional_name=True), "a routing rule, as in the YAML's routing.rules")


@router.get("/rules", summary="The routing rules, in the order they are tried")
def list_rules(request: Request, response: Response, principal: Viewer) -> RulesOut:
    revision, document, _ = _newest(request, response)
    return RulesOut(revision=revision, items=document["routing"]["rules"])


@router.get("/rules/{name}", summary="One routing rule and its place in the order")
def get_rule(name: str, request: Request, response: Response, principal: Viewer) -> RuleOut:
    revision, document, _ = _newest(request, response)
    found = _rule_at(document, name)
    if found is None:
        names = ", ".join(rule["name"] for rule in document["routing"]["rules"]) or "none"
        raise Refused(404, f"there is no routing rule {name!r} (configured: {names})")
    return RuleOut(revision=revision, position=found[0], item=found[1])


@router.put(
    "/rules/{name}",
    summary="Create (201) or replace (200) a routing rule; the next routing decision uses it",
    description="A rule that exists keeps its place and a new one is appended, unless `position` is given.",
    openapi_extra=_RULE_BODY,
    responses={201: {"description": "created", "model": RuleOut}},
)
def put_rule(
    name: str,
    request: Request,
    response: Response,
    principal: Admin,
    body: JsonBody,
    position: Annotated[int | None, Query(ge=0, description="0-based place in the order (0: tried first)")] = None,
    if_match: IfMatch = None,
) -> RuleOut:
    rule = _named_body(body, name, f"routing rule {name!r}")
    existed: list[bool] = []

    def edit(document: dict[str, Any]) -> dict[str, Any]:
        existed[:] = [_rule_at(document, name) is not None]
        return edits.put_rule(document, name, rule, position)

    revision, document = _change(request, response, principal, if_match, edit, f"routing rule {name}")
    if not existed[0]:
        response.status_code = 201
    found = _rule_at(document, name)
    assert found is not None  # the change just stored it
    return RuleOut(revision=revision, position=found[0], item=found[1])


@router.delete("/rules/{name}", summary="Remove a routing rule")
def delete_rule(name: str, request: Request, response: Response, principal: Admin, if_match: IfMatch = None) -> RuleOut:
    removed: list[tuple[int, dict[str, Any]]] = []

    def edit(document: dict[str, Any]) -> dict[str, Any]:
        result = edits.delete_rule(document, name)
        found = _rule_at(document, name)
        removed[:] = [found] if found is not None else []
        return result

    revision, _ = _change(request, response, principal, if_match, edit, f"remove routing rule {name}")
    return RuleOut(revision=revision, position=removed[0][0], item=removed[0][1])


@router.post(
    "/rules/{name}/move",
    summary="Move a routing rule to another place in the order",
    openapi_extra=_body(MoveIn.model_json_schema(), "where to"),
)
def move_rule(
    name: str, request: Request, response: Response, principal: Admin, body: JsonBody, if_match: IfMatch = None
) -> RuleOut:
    position = _validated(MoveIn, body).position
    revision, document = _change(
        request,
        response,
        principal,
        if_match,
        lambda doc: edits.move_rule(doc, name, position),
        f"move routing rule {name} to position {position}",
    )
    found = _rule_at(document, name)
    assert found is not None  # a move keeps the rule
    return RuleOut(revision=revision, position=found[0], item=found[1])
