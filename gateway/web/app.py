"""The FastAPI application of ``gazex serve``: API under /api/v1, probes, and what routers join it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.web import (
    api_actions,
    api_config,
    api_pull,
    api_status,
    auth,
    console,
    metrics_route,
    probes,
    stow_intake,
)
from gateway.web.auth import LoginThrottle
from gateway.web.context import ApiContext

API_PREFIX = "/api/v1"
#: Routes served without a login; every other route declares its role (tests check both).
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        f"{API_PREFIX}/auth/login",
        f"{API_PREFIX}/openapi.json",
        f"{API_PREFIX}/docs",
        f"{API_PREFIX}/docs/oauth2-redirect",
        "/login",  # the console's login page and form
        "/static/console/{name}",  # the console's stylesheet and script
    }
)


def create_app(context: ApiContext) -> FastAPI:
    from gateway import __version__

    app = FastAPI(
        title="GazeX Gateway",
        version=__version__,
        description="Operate the gateway: configuration, studies, jobs, deliveries, accounts. "
        "Authenticate with 'Authorization: Bearer <token>' (gazex users token) or a console session.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.context = context
    app.state.login_throttle = LoginThrottle()
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(probes.router)
    app.include_router(auth.router)
    app.include_router(metrics_route.router)
    app.include_router(api_status.router)
    app.include_router(api_actions.router)
    app.include_router(api_config.router)
    app.include_router(api_pull.router)
    app.include_router(console.router)
    app.include_router(stow_intake.router)
    app.add_middleware(BodyLimit, limit=int(context.settings.http.max_upload_bytes))
    app.add_middleware(SecurityHeaders)
    return app


async def _validation_error(request: Request, exc: Exception) -> Response:
    """422 with one readable line per problem ("body.port: Input should be less than or equal to 65535")."""
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse({"detail": "; ".join(problems) or "invalid request", "errors": problems}, status_code=422)


class BodyLimit:
    """Refuses a request body larger than ``limit`` with 413, before a route reads it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(self.limit, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLargeError
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _BodyTooLargeError:
            if not started:
                await _too_large(self.limit, send)


class _BodyTooLargeError(Exception):
    pass


async def _too_large(limit: int, send: Send) -> None:
    response = JSONResponse(
        {"detail": f"the request body is larger than {limit} bytes (http.max_upload_bytes)"}, status_code=413
    )
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class SecurityHeaders:
    """No sniffing, no framing, no referrer, no caching of API answers."""

    HEADERS: tuple[tuple[bytes, bytes], ...] = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in self.HEADERS if item[0] not in present)
                if scope["path"].startswith(API_PREFIX) and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def route_roles(app: FastAPI) -> dict[tuple[str, str], str | None]:
    """(method, path) -> the role a route requires, or None when it declares none (for the tests)."""
    found: dict[tuple[str, str], str | None] = {}
    for path, route in _api_routes(app.routes, ""):
        roles = [dep.call.role for dep in _dependencies(route.dependant) if isinstance(dep.call, auth.RoleRequirement)]
        for method in route.methods or ():
            found[(method, path)] = roles[0] if roles else None
    return found


def _api_routes(routes: Any, prefix: str) -> list[tuple[str, Any]]:
    """Every APIRoute with its full path, through included routers (FastAPI keeps them nested)."""
    from fastapi.routing import APIRoute

    found: list[tuple[str, Any]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append((prefix + route.path, route))
        elif hasattr(route, "original_router"):
            context = getattr(route, "include_context", None)
            found.extend(_api_routes(route.original_router.routes, prefix + getattr(context, "prefix", "")))
    return found


def _dependencies(dependant: Any) -> list[Any]:
    found = []
    for dependency in dependant.dependencies:
        found.append(dependency)
        found.extend(_dependencies(dependency))
    return found
