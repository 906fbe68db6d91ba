"""The web console's pages: server-rendered HTML (Jinja2) and plain forms, on the API's server.

Pages read and act through :mod:`gateway.operations` (the same layer as the REST API) and
change the configuration through :class:`gateway.config.live.LiveSettings` with the pure edits
of :mod:`gateway.config.edits`.  Every route declares its role; /login and the static files are
public (``gateway.web.app.PUBLIC_PATHS``).
"""

from __future__ import annotations

import logging
import mimetypes
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from gateway.accounts import ROLES, AccountError, Principal
from gateway.config.edits import EditError
from gateway.config.live import ConfigRejected
from gateway.web.api_actions import _wake
from gateway.web.auth import _audit_user_change, client_address, context_of, log_in, log_out, require
from gateway.web.console.audit_view import audit_rows
from gateway.web.console.destinations import DestinationForm, destination_body, destination_form
from gateway.web.console.pages import STATIC_DIR, ConsoleRoute, flash, redirect, render, safe_next
from gateway.web.console.thumbnails import ThumbnailCache, overlay_sources
from gateway.web.context import current_settings, live_settings

LOGGER = logging.getLogger(__name__)
router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Viewer = Annotated[Principal, require("viewer")]
Operator = Annotated[Principal, require("operator")]
Admin = Annotated[Principal, require("admin")]

STATIC_FILES = frozenset({"console.css", "console.js"})
AUDIT_DEFAULT_ROWS = 200
AUDIT_MAX_ROWS = 5000


def thumbnail_cache(request: Request) -> ThumbnailCache:
    found = getattr(request.app.state, "console_thumbnails", None)
    if not isinstance(found, ThumbnailCache):
        found = ThumbnailCache()
        request.app.state.console_thumbnails = found
    return found


def _operation_error(request: Request, exc: Exception) -> None:
    flash(request, "error", str(exc))


# -- login, logout, static -----------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", None, title="Log in", next=safe_next(next), error=None, username="")


@router.post("/login")
def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form()] = "/",
) -> Response:
    target = safe_next(next)
    response = redirect(target)
    try:
        log_in(context_of(request), request, response, username, password)
    except HTTPException as exc:
        return render(
            request,
            "login.html",
            None,
            title="Log in",
            status_code=exc.status_code,
            next=target,
            error=str(exc.detail),
            username=username,
        )
    return response


@router.post("/logout")
def logout_submit(request: Request, principal: Viewer) -> Response:
    response = redirect("/login")
    log_out(context_of(request), request, response, principal)
    return response


@router.get("/static/console/{name}")
def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        raise HTTPException(404, f"no static file {name!r}")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(
        (STATIC_DIR / name).read_bytes(), media_type=media_type, headers={"Cache-Control": "public, max-age=3600"}
    )


# -- dashboard -----------------------------------------------------------------------------------
@router.get("/")
def dashboard_page(request: Request, principal: Viewer) -> HTMLResponse:
    from gateway.operations.queries import dashboard_counts

    context = context_of(request)
    dashboard = dashboard_counts(context.engine, context.settings)
    return render(request, "dashboard.html", principal, title="Dashboard", section="dashboard", dashboard=dashboard)


# -- studies -------------------------------------------------------------------------------------
@router.get("/studies")
def studies_page(
    request: Request,
    principal: Viewer,
    state: str | None = None,
    calling_ae: str | None = None,
    modality: str | None = None,
    text: str | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    from gateway.operations import OperationError
    from gateway.operations.queries import STUDY_STATES, list_studies

    filters = {"state": state or None, "calling_ae": calling_ae or None, "modality": modality or None}
    filters["text"] = text or None
    try:
        found = list_studies(
            context_of(request).engine,
            state=filters["state"],
            calling_ae=filters["calling_ae"],
            modality=filters["modality"],
            text=filters["text"],
            page=page,
        )
    except OperationError as exc:
        raise HTTPException(422, str(exc)) from None
    return render(
        request,
        "studies.html",
        principal,
        title="Studies",
        section="studies",
        studies=found,
        filters=filters,
        states=STUDY_STATES,
        query="&".join(f"{key}={value}" for key, value in filters.items() if value),
    )


@router.get("/studies/{study_uid}")
def study_page(request: Request, study_uid: str, principal: Viewer) -> HTMLResponse:
    from gateway.operations import OperationError
    from gateway.operations.queries import study_detail

    context = context_of(request)
    try:
        detail = study_detail(context.engine, study_uid, context.settings)
    except OperationError as exc:
        raise HTTPException(404 if exc.kind == "not_found" else 422, str(exc)) from None
    return render(
        request,
        "study.html",
        principal,
        title=f"Study {study_uid}",
        section="studies",
        detail=detail,
        overlays=overlay_sources(context.engine, study_uid),
    )


@router.get("/studies/{study_uid}/overlay/{sop_instance_uid}.png")
async def study_overlay(request: Request, study_uid: str, sop_instance_uid: str, principal: Viewer) -> Response:
    """The image with our boxes and trajectory, drawn from the delivered SR (PNG, cached, ETag)."""
    context = context_of(request)
    sources = await run_in_threadpool(overlay_sources, context.engine, study_uid)
    source = next((s for s in sources if s.image_sop_instance_uid == sop_instance_uid), None)
    if source is None:
        raise HTTPException(404, "no delivered SR of this study describes that image (yet)")
    headers = {"ETag": source.etag, "Cache-Control": "private, max-age=86400"}
    if request.headers.get("if-none-match") == source.etag:
        return Response(status_code=304, headers=headers)
    settings = context.settings
    try:
        png = await run_in_threadpool(
            thumbnail_cache(request).png, source, settings.storage.outbox_path, settings.storage.spool_path
        )
    except FileNotFoundError:
        raise HTTPException(404, "the SR or the image is no longer on disk (purged)") from None
    return Response(png, media_type="image/png", headers=headers)


@router.post("/studies/{study_uid}/reprocess")
def study_reprocess(request: Request, study_uid: str, principal: Operator) -> Response:
    from gateway.operations import OperationError, actions

    try:
        context = context_of(request)
        result = actions.reprocess_study(
            context.engine,
            live_settings(context).current(),
            study_uid,
            actor=principal.username,
            on_job_queued=lambda: _wake(context, "jobs_waiting"),
        )
        flash(request, "ok", f"study queued for reprocessing as job {result.job_id} ({result.reason})")
    except OperationError as exc:
        _operation_error(request, exc)
    return redirect(f"/studies/{study_uid}")


# -- jobs and deliveries ---------------------------------------------------------------------------
@router.get("/jobs")
def jobs_page(
    request: Request, principal: Viewer, status: str | None = None, page: Annotated[int, Query(ge=1)] = 1
) -> HTMLResponse:
    from gateway.operations import OperationError
    from gateway.operations.queries import list_jobs
    from gateway.pipeline.states import JobStatus

    try:
        found = list_jobs(context_of(request).engine, status=status or None, page=page)
    except OperationError as exc:
        raise HTTPException(422, str(exc)) from None
    return render(
        request,
        "jobs.html",
        principal,
        title="Jobs",
        section="jobs",
        jobs=found,
        status=status or "",
        statuses=[s.value for s in JobStatus],
    )


@router.post("/jobs/{job_id}/cancel")
def job_cancel(request: Request, job_id: int, principal: Operator) -> Response:
    from gateway.operations import OperationError, actions

    try:
        actions.cancel_job(context_of(request).engine, job_id, actor=principal.username)
        flash(request, "ok", f"job {job_id} cancelled")
    except OperationError as exc:
        _operation_error(request, exc)
    return redirect("/jobs")


@router.get("/deliveries")
def deliveries_page(
    request: Request,
    principal: Viewer,
    status: str | None = None,
    destination: str | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    from gateway.operations import OperationError
    from gateway.operations.queries import list_deliveries
    from gateway.pipeline.states import DeliveryStatus

    try:
        found = list_deliveries(
            context_of(request).engine, status=status or None, destination=destination or None, page=page
        )
    except OperationError as exc:
        raise HTTPException(422, str(exc)) from None
    return render(
        request,
        "deliveries.html",
        principal,
        title="Deliveries",
        section="deliveries",
        deliveries=found,
        status=status or "",
        destination=destination or "",
        statuses=[s.value for s in DeliveryStatus],
    )


@router.post("/deliveries/{delivery_id}/retry")
def delivery_retry(request: Request, delivery_id: int, principal: Operator) -> Response:
    from gateway.operations import OperationError, actions

    try:
        actions.retry_delivery(context_of(request).engine, delivery_id, actor=principal.username)
        _wake(context_of(request), "deliveries_waiting")
        flash(request, "ok", f"delivery {delivery_id} will be sent again")
    except OperationError as exc:
        _operation_error(request, exc)
    return redirect("/deliveries")


# -- configuration -------------------------------------------------------------------------------
@router.get("/pulls")
def pulls_page(request: Request, principal: Viewer) -> HTMLResponse:
    from gateway.pull.listing import pull_summaries

    context = context_of(request)
    return render(
        request,
        "pulls.html",
        principal,
        title="Pulls",
        section="pulls",
        pulls=pull_summaries(context.engine, limit=100),
        sources=sorted(current_settings(context).sources),
    )


@router.post("/pulls")
def pull_request(
    request: Request,
    principal: Operator,
    source: Annotated[str, Form(max_length=64)],
    study_uid: Annotated[str, Form(max_length=64)] = "",
    modalities: Annotated[str, Form(max_length=64)] = "",
    body_part: Annotated[str, Form(max_length=16)] = "",
    date_from: Annotated[str, Form(max_length=8)] = "",
    date_to: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    from pydantic import ValidationError

    from gateway.pipeline.clock import SystemClock
    from gateway.pull.listing import PullRefusedError, request_pull
    from gateway.pull.query import PullQuery
    from gateway.web.api_pull import _wake as wake_puller

    context = context_of(request)
    fields = {"study_uid": study_uid, "modalities": modalities, "body_part": body_part}
    fields |= {"date_from": date_from, "date_to": date_to}
    try:
        query = PullQuery.model_validate({key: value.strip() for key, value in fields.items() if value.strip()})
        pull = request_pull(
            context.engine, current_settings(context), source, query, actor=principal.username, now=SystemClock().now()
        )
    except ValidationError as exc:
        flash(request, "error", "; ".join(str(error["msg"]) for error in exc.errors()))
        return redirect("/pulls")
    except PullRefusedError as exc:
        flash(request, "error", str(exc))
        return redirect("/pulls")
    LOGGER.info("pull %d from %s (%s) requested by %s", pull.id, pull.source, pull.description, principal.username)
    wake_puller(context)
    flash(request, "ok", f"pull {pull.id} queued: {pull.description}")
    return redirect("/pulls")


@router.post("/pulls/{pull_id}/cancel")
def pull_cancel(request: Request, pull_id: int, principal: Operator) -> Response:
    from gateway.pipeline.clock import SystemClock
    from gateway.pull.listing import cancel_pull

    context = context_of(request)
    if cancel_pull(context.engine, current_settings(context), pull_id, now=SystemClock().now()) is None:
        raise HTTPException(404, f"no pull {pull_id}")
    LOGGER.info("pull %d cancelled by %s", pull_id, principal.username)
    flash(request, "ok", f"pull {pull_id} cancelled")
    return redirect("/pulls")


@router.get("/configuration")
def configuration_page(
    request: Request, principal: Viewer, study: str | None = None, edit: str | None = None
) -> HTMLResponse:
    """The configuration; ``edit``: the destination to fill the destination form with (admin)."""
    form, problems = None, []
    if edit and principal.has("admin"):
        destinations = live_settings(context_of(request)).document()["destinations"]
        if edit in destinations:
            form = destination_form(edit, destinations[edit])
        else:
            problems = [f"there is no destination {edit!r} to edit (configured: {', '.join(destinations) or 'none'})"]
    return _configuration(request, principal, study, destination=form, problems=problems)


def _configuration(
    request: Request,
    principal: Principal,
    study: str | None,
    rules_test: Any = None,
    *,
    destination: DestinationForm | None = None,
    problems: list[str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The configuration page; ``destination`` and ``problems``: the destination form as filled in and
    why it was refused (or empty, to add one)."""
    live = live_settings(context_of(request))
    document = live.document()
    settings = live.current()
    rules = [
        (rule["name"], yaml.safe_dump(rule, sort_keys=False, allow_unicode=True))
        for rule in document["routing"]["rules"]
    ]
    return render(
        request,
        "configuration.html",
        principal,
        title="Configuration",
        section="configuration",
        status_code=status_code,
        dicom=settings.dicom,
        destinations=settings.destinations,
        destination=destination or DestinationForm(),
        problems=problems or [],
        rules=rules,
        revision=live.revision,
        history=live.history(10),
        study=study or "",
        rules_test=rules_test,
    )


def _change(request: Request, principal: Principal, edit: Any, summary: str) -> list[str]:
    """Apply ``edit`` to the live configuration; why it was refused (nothing stored), or [] (flashed)."""
    context = context_of(request)
    try:
        change = live_settings(context).apply(
            edit, actor=principal.username, summary=summary, address=client_address(request)
        )
    except ConfigRejected as exc:
        return exc.problems
    except EditError as exc:
        return [exc.message]
    if change.before == change.after:
        flash(request, "info", f"{summary}: nothing to change")
    else:
        flash(request, "ok", f"{summary} (revision {change.revision})")
    return []


def _apply(request: Request, principal: Principal, edit: Any, summary: str) -> None:
    """:func:`_change`, a refusal flashed."""
    problems = _change(request, principal, edit, summary)
    if problems:
        flash(request, "error", "not changed: " + "; ".join(problems))


@router.post("/configuration/ae-titles")
def config_ae_titles(request: Request, principal: Admin, ae_titles: Annotated[str, Form()]) -> Response:
    from gateway.config import edits

    titles = [part.strip() for part in ae_titles.replace(",", " ").split() if part.strip()]
    _apply(request, principal, lambda doc: edits.set_ae_titles(doc, titles), f"our AE titles: {', '.join(titles)}")
    return redirect("/configuration")


@router.post("/configuration/flags")
def config_flags(
    request: Request,
    principal: Admin,
    require_called_ae_title: Annotated[bool, Form()] = False,
    reject_unknown_callers: Annotated[bool, Form()] = False,
) -> Response:
    from gateway.config import edits

    _apply(
        request,
        principal,
        lambda doc: edits.set_flags(
            doc, require_called_ae_title=require_called_ae_title, reject_unknown_callers=reject_unknown_callers
        ),
        "admission flags",
    )
    return redirect("/configuration")


@router.post("/configuration/callers")
def config_add_caller(
    request: Request, principal: Admin, ae_title: Annotated[str, Form()], host: Annotated[str, Form()] = ""
) -> Response:
    from gateway.config import edits

    body = {"ae_title": ae_title.strip(), "host": host.strip() or None}
    _apply(
        request, principal, lambda doc: edits.add_caller(doc, body), f"allow caller {body['ae_title']} {host}".strip()
    )
    return redirect("/configuration")


@router.post("/configuration/callers/{index}/delete")
def config_remove_caller(request: Request, index: int, principal: Admin) -> Response:
    from gateway.config import edits

    _apply(request, principal, lambda doc: edits.remove_caller(doc, index), f"remove allowed caller #{index + 1}")
    return redirect("/configuration")


@router.post("/configuration/destinations")
def config_put_destination(request: Request, principal: Admin, form: Annotated[DestinationForm, Form()]) -> Response:
    """Add or replace a destination of either type; a refusal shows the form again with its problems."""
    from gateway.config import edits

    body = destination_body(form)
    name = form.name.strip()
    problems = _change(request, principal, lambda doc: edits.put_destination(doc, name, body), f"destination {name}")
    if problems:
        return _configuration(request, principal, None, destination=form, problems=problems, status_code=422)
    return redirect("/configuration")


@router.post("/configuration/destinations/{name}/delete")
def config_delete_destination(request: Request, name: str, principal: Admin) -> Response:
    from gateway.config import edits

    _apply(request, principal, lambda doc: edits.delete_destination(doc, name), f"remove destination {name}")
    return redirect("/configuration")


@router.post("/configuration/destinations/{name}/echo")
def config_echo(request: Request, name: str, principal: Operator) -> Response:
    from gateway.operations import OperationError, actions

    context = context_of(request)
    try:
        result = actions.echo_destination(live_settings(context).current(), name, actor=principal.username)
    except OperationError as exc:
        _operation_error(request, exc)
    else:
        where = f"{result.ae_title}@{result.host}:{result.port}"
        if result.check == "HTTP":  # a DICOMweb destination: an HTTP reachability check, not a C-ECHO
            flash(request, "ok" if result.ok else "error", f"{name}: {result.message} ({result.milliseconds:.0f} ms)")
        elif result.ok:
            flash(request, "ok", f"C-ECHO {name} ({where}): success in {result.milliseconds:.0f} ms")
        else:
            flash(request, "error", f"C-ECHO {name} ({where}) failed: {result.message}")
    return redirect("/configuration")


@router.post("/configuration/rules")
def config_put_rule(
    request: Request,
    principal: Admin,
    rule: Annotated[str, Form(max_length=65536)],
    position: Annotated[str, Form()] = "",
) -> Response:
    from gateway.config import edits

    try:
        body = yaml.safe_load(rule)
    except yaml.YAMLError as exc:
        flash(request, "error", f"not changed: the rule is not YAML: {exc}")
        return redirect("/configuration")
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        flash(request, "error", "not changed: a rule is a YAML mapping with a name, match, ... (as in the file)")
        return redirect("/configuration")
    name = body["name"]
    where = int(position) - 1 if position.strip().isdigit() and int(position) > 0 else None
    _apply(request, principal, lambda doc: edits.put_rule(doc, name, body, where), f"routing rule {name}")
    return redirect("/configuration")


@router.post("/configuration/rules/{name}/delete")
def config_delete_rule(request: Request, name: str, principal: Admin) -> Response:
    from gateway.config import edits

    _apply(request, principal, lambda doc: edits.delete_rule(doc, name), f"remove routing rule {name}")
    return redirect("/configuration")


@router.post("/configuration/rules/test")
def config_test_rules(request: Request, principal: Operator, study: Annotated[str, Form(max_length=64)]) -> Response:
    """What the rules in force would do with a received study: shown on the configuration page."""
    from gateway.operations import OperationError, actions

    context = context_of(request)
    study = study.strip()
    try:
        outcome = actions.test_rules(live_settings(context).current(), db=context.engine, study_instance_uid=study)
    except OperationError as exc:
        _operation_error(request, exc)
        return redirect("/configuration")
    return _configuration(request, principal, study, outcome)


# -- users (admin) -------------------------------------------------------------------------------
@router.get("/users")
def users_page(request: Request, principal: Admin) -> HTMLResponse:
    users = context_of(request).accounts.users()
    return render(request, "users.html", principal, title="Users", section="users", users=users, roles=ROLES)


@router.post("/users")
def users_add(
    request: Request,
    principal: Admin,
    username: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form()],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    try:
        view = context_of(request).accounts.add_user(username.strip(), role, password)
    except AccountError as exc:
        flash(request, "error", f"not added: {exc}")
    else:
        _audit_user_change(request, principal, f"user {view.username} added as {view.role}", None, view)
        flash(request, "ok", f"user {view.username} added as {view.role}")
    return redirect("/users")


@router.post("/users/{username}")
def users_change(
    request: Request,
    username: str,
    principal: Admin,
    role: Annotated[str, Form()],
    state: Annotated[str, Form(pattern="^(active|disabled)$")],
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    try:
        before, after = context_of(request).accounts.update_user(
            username, role=role, disabled=state == "disabled", password=password or None
        )
    except AccountError as exc:
        flash(request, "error", f"not changed: {exc}")
    else:
        changed = "role, state" + (", password" if password else "")
        _audit_user_change(request, principal, f"user {username} changed: {changed}", before, after)
        flash(request, "ok", f"user {username}: {after.role}, {'disabled' if after.disabled else 'active'}")
    return redirect("/users")


@router.post("/users/{username}/delete")
def users_delete(request: Request, username: str, principal: Admin) -> Response:
    try:
        view = context_of(request).accounts.delete_user(username)
    except AccountError as exc:
        flash(request, "error", f"not deleted: {exc}")
    else:
        _audit_user_change(request, principal, f"user {username} deleted", view, None)
        flash(request, "ok", f"user {username} deleted")
    return redirect("/users")


# -- audit trail (admin) -------------------------------------------------------------------------
@router.get("/audit")
def audit_page(
    request: Request, principal: Admin, limit: Annotated[int, Query(ge=1, le=AUDIT_MAX_ROWS)] = AUDIT_DEFAULT_ROWS
) -> HTMLResponse:
    settings = context_of(request).settings
    path = settings.audit_path
    return render(
        request,
        "audit.html",
        principal,
        title="Audit trail",
        section="audit",
        rows=audit_rows(path, limit),
        path=str(path),
        limit=limit,
        enabled=settings.audit.enabled,
    )
