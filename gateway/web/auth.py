"""Who may call what: bearer tokens for the API, session cookies with CSRF for the console.

Every route declares its role with ``Depends(require("viewer" | "operator" | "admin"))``; the
role test (tests/gateway/web/test_roles.py) finds the declaration on every route.  A request
without valid credentials is answered 401, one with too weak a role 403, and a cookie-borne
unsafe request without the session's CSRF token 403; the route never runs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gateway.accounts import ROLES, AccountError, Principal, same_secret
from gateway.events import ConfigurationChange
from gateway.web.context import ApiContext
from gateway.web.server import CLIENT_CERTIFICATE, certificate_common_name

SESSION_COOKIE = "gazex_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Failed logins from one address within the window before further tries get 429.
LOGIN_FAILURES_ALLOWED = 10
LOGIN_WINDOW_SECONDS = 300.0


def context_of(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


def client_address(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


#: Who an anonymous request is on a route the settings made public (``http.metrics_public``).
ANONYMOUS = Principal(0, "anonymous", "viewer", "public")


class RoleRequirement:
    """A dependency: the request's principal, who must hold at least ``role``.

    ``public_when`` (the context -> bool) lets a route be served without credentials when the
    settings say so; the route still declares its role for when they do not.
    """

    def __init__(
        self, role: str, public_when: Callable[[ApiContext], bool] | None = None, *, certificate: bool = False
    ) -> None:
        if role not in ROLES:
            raise ValueError(f'Argument "role" must be one of {ROLES}, not {role!r}')
        self.role = role
        self.public_when = public_when
        self.certificate = certificate

    async def __call__(self, request: Request) -> Principal:
        if self.public_when is not None and self.public_when(context_of(request)):
            return ANONYMOUS
        if self.certificate and _no_credentials(request):
            found = certificate_principal(request)
            if found is not None:
                request.state.principal = found
                return found
        principal = await authenticate(request)
        if not principal.has(self.role):
            raise HTTPException(403, f"this needs the {self.role} role; {principal.username} is {principal.role}")
        return principal


def require(role: str, public_when: Callable[[ApiContext], bool] | None = None, *, certificate: bool = False) -> Any:
    """``Depends`` on a :class:`RoleRequirement`; ``certificate``: a mapped client certificate will do too."""
    return Depends(RoleRequirement(role, public_when, certificate=certificate))


def _no_credentials(request: Request) -> bool:
    return request.headers.get("authorization") is None and not request.cookies.get(SESSION_COOKIE)


def certificate_principal(request: Request) -> Principal | None:
    """The principal of a verified client certificate whose CN ``dicomweb.certificate_callers`` lists;
    None without a certificate; HTTPException 403 for a certificate not listed."""
    certificate = getattr(request.state, CLIENT_CERTIFICATE, None)
    if not certificate:
        return None
    name = certificate_common_name(certificate)
    if name is None or name not in context_of(request).settings.dicomweb.certificate_callers:
        context_of(request).observer.user_login(f"cert:{name or '?'}", client_address(request), False, "certificate")
        raise HTTPException(403, f"the client certificate {name!r} is not in dicomweb.certificate_callers")
    return Principal(0, f"cert:{name}", "viewer", "certificate")


async def authenticate(request: Request) -> Principal:
    """The principal of a request (token or session, CSRF checked), or HTTPException 401/403."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    context = context_of(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise _unauthorised("the Authorization header must be 'Bearer <token>'")
        principal = await run_in_threadpool(context.accounts.principal_for_token, secret.strip())
        if principal is None:
            context.observer.user_login("-", client_address(request), False, "token")
            raise _unauthorised("the bearer token is unknown, revoked or expired")
        request.state.principal = principal
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = await run_in_threadpool(context.accounts.principal_for_session, cookie)
        if found is None:
            raise _unauthorised("the session has ended; log in again")
        principal, csrf = found
        if request.method not in SAFE_METHODS and not same_secret(await _submitted_csrf(request), csrf):
            raise HTTPException(403, f"the CSRF token is missing or wrong (send the {CSRF_HEADER} header)")
        request.state.principal = principal
        request.state.csrf_token = csrf
        return principal
    raise _unauthorised("log in, or send 'Authorization: Bearer <token>'")


async def _submitted_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def _unauthorised(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="gazex"'})


class LoginThrottle:
    """Counts failed logins per address; too many within the window are refused (429) unchecked."""

    def __init__(self, allowed: int = LOGIN_FAILURES_ALLOWED, window: float = LOGIN_WINDOW_SECONDS) -> None:
        self.allowed = allowed
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str | None) -> bool:
        with self._lock:
            failures = self._recent(address or "-")
            return len(failures) >= self.allowed

    def failed(self, address: str | None) -> None:
        with self._lock:
            self._recent(address or "-").append(time.monotonic())

    def _recent(self, key: str) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and time.monotonic() - failures[0] > self.window:
            failures.popleft()
        return failures


# -- login, logout, me ---------------------------------------------------------------------
class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    username: str
    role: str
    csrf_token: str
    expires_at: datetime


class Me(BaseModel):
    username: str
    role: str
    method: str


router = APIRouter(prefix="/api/v1", tags=["auth"])


def log_in(context: ApiContext, request: Request, response: Response, username: str, password: str) -> SessionOut:
    """Check a password, open a session and set its cookie; 401 (or 429) otherwise.  Shared by the console."""
    throttle: LoginThrottle = request.app.state.login_throttle
    address = client_address(request)
    if throttle.blocked(address):
        context.observer.user_login(username, address, False, "password")
        raise HTTPException(429, "too many failed logins from this address; wait a few minutes")
    principal = context.accounts.authenticate(username, password)
    if principal is None:
        throttle.failed(address)
        context.observer.user_login(username, address, False, "password")
        raise HTTPException(401, "wrong user name or password, or the account is disabled")
    context.observer.user_login(principal.username, address, True, "password")
    session = context.accounts.create_session(principal, context.settings.http.session_minutes)
    response.set_cookie(
        SESSION_COOKIE,
        session.cookie,
        max_age=context.settings.http.session_minutes * 60,
        httponly=True,
        secure=context.secure_cookies,
        samesite="strict",
        path="/",
    )
    return SessionOut(
        username=principal.username, role=principal.role, csrf_token=session.csrf_token, expires_at=session.expires_at
    )


def log_out(context: ApiContext, request: Request, response: Response, principal: Principal) -> None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        context.accounts.end_session(cookie)
        context.observer.user_logout(principal.username, client_address(request))
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.post("/auth/login", summary="Log in (console session cookie); returns the CSRF token")
def login(body: Login, request: Request, response: Response) -> SessionOut:
    return log_in(context_of(request), request, response, body.username, body.password)


@router.post("/auth/logout", status_code=204, summary="End the console session")
def logout(request: Request, response: Response, principal: Annotated[Principal, require("viewer")]) -> Response:
    log_out(context_of(request), request, response, principal)
    response.status_code = 204
    return response


@router.get("/auth/me", summary="Who am I")
def me(principal: Annotated[Principal, require("viewer")]) -> Me:
    return Me(username=principal.username, role=principal.role, method=principal.method)


# -- users (admin) -------------------------------------------------------------------------
class UserOut(BaseModel):
    username: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    role: str
    password: str = Field(min_length=1, max_length=1024)


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, max_length=1024)


def account_error(exc: AccountError) -> HTTPException:
    return HTTPException({"not_found": 404, "conflict": 409}.get(exc.kind, 422), str(exc))


def _user_out(view: Any) -> UserOut:
    return UserOut(
        username=view.username,
        role=view.role,
        disabled=view.disabled,
        created_at=view.created_at,
        last_login_at=view.last_login_at,
    )


def _audit_user_change(
    request: Request, principal: Principal, summary: str, before: Any | None, after: Any | None
) -> None:
    def public(view: Any | None) -> dict[str, Any]:
        return {} if view is None else {"username": view.username, "role": view.role, "disabled": view.disabled}

    context_of(request).observer.configuration_changed(
        ConfigurationChange(
            actor=principal.username,
            summary=summary,
            revision=0,
            before=public(before),
            after=public(after),
            address=client_address(request),
        )
    )


@router.get("/users", tags=["users"], summary="List the accounts")
def list_users(request: Request, principal: Annotated[Principal, require("admin")]) -> list[UserOut]:
    return [_user_out(view) for view in context_of(request).accounts.users()]


@router.post("/users", tags=["users"], status_code=201, summary="Add an account")
def add_user(body: UserIn, request: Request, principal: Annotated[Principal, require("admin")]) -> UserOut:
    try:
        view = context_of(request).accounts.add_user(body.username, body.role, body.password)
    except AccountError as exc:
        raise account_error(exc) from None
    _audit_user_change(request, principal, f"user {view.username} added as {view.role}", None, view)
    return _user_out(view)


@router.patch("/users/{username}", tags=["users"], summary="Change an account's role, password or state")
def change_user(
    username: str, body: UserPatch, request: Request, principal: Annotated[Principal, require("admin")]
) -> UserOut:
    try:
        before, after = context_of(request).accounts.update_user(
            username, role=body.role, disabled=body.disabled, password=body.password
        )
    except AccountError as exc:
        raise account_error(exc) from None
    changed = [name for name in ("role", "disabled") if getattr(body, name) is not None]
    if body.password is not None:
        changed.append("password")
    _audit_user_change(request, principal, f"user {username} changed: {', '.join(changed) or 'nothing'}", before, after)
    return _user_out(after)


@router.delete("/users/{username}", tags=["users"], status_code=204, summary="Delete an account")
def delete_user(username: str, request: Request, principal: Annotated[Principal, require("admin")]) -> Response:
    try:
        view = context_of(request).accounts.delete_user(username)
    except AccountError as exc:
        raise account_error(exc) from None
    _audit_user_change(request, principal, f"user {username} deleted", view, None)
    return Response(status_code=204)


# -- API tokens ----------------------------------------------------------------------------
class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    expires_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(BaseModel):
    id: int
    username: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class NewToken(TokenOut):
    token: str = Field(description="the secret: shown once, send it as 'Authorization: Bearer <token>'")


@router.get("/tokens", tags=["tokens"], summary="Your API tokens (an admin: everyone's)")
def list_tokens(request: Request, principal: Annotated[Principal, require("viewer")]) -> list[TokenOut]:
    owner = None if principal.has("admin") else principal.username
    return [TokenOut(**vars(view)) for view in context_of(request).accounts.tokens(owner)]


@router.post("/tokens", tags=["tokens"], status_code=201, summary="Make an API token for yourself")
def create_token(body: TokenIn, request: Request, principal: Annotated[Principal, require("viewer")]) -> NewToken:
    try:
        secret, view = context_of(request).accounts.create_token(
            principal.username, body.name, expires_days=body.expires_days
        )
    except AccountError as exc:
        raise account_error(exc) from None
    return NewToken(token=secret, **vars(view))


@router.delete("/tokens/{token_id}", tags=["tokens"], status_code=204, summary="Revoke an API token")
def revoke_token(token_id: int, request: Request, principal: Annotated[Principal, require("viewer")]) -> Response:
    owner = None if principal.has("admin") else principal.username
    try:
        context_of(request).accounts.revoke_token(token_id, username=owner)
    except AccountError as exc:
        raise account_error(exc) from None
    return Response(status_code=204)
