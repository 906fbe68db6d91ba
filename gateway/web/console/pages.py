"""What every console page shares: its route class, templates, flash messages and error pages.

A page request without a session is redirected to /login (not answered with JSON 401); a role
too weak gets a 403 page; every form that changes something carries the session's CSRF token
(``csrf_token``), which :func:`gateway.web.auth.authenticate` checks before the route runs.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from gateway.accounts import Principal
from gateway.web.auth import SESSION_COOKIE

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
STATIC_DIR = HERE / "static"

#: The navigation: (key, label, href, weakest role that sees it).
NAVIGATION = (
    ("dashboard", "Dashboard", "/", "viewer"),
    ("studies", "Studies", "/studies", "viewer"),
    ("jobs", "Jobs", "/jobs", "viewer"),
    ("deliveries", "Deliveries", "/deliveries", "viewer"),
    ("pulls", "Pulls", "/pulls", "viewer"),
    ("configuration", "Configuration", "/configuration", "viewer"),
    ("users", "Users", "/users", "admin"),
    ("audit", "Audit trail", "/audit", "admin"),
)
_HEADINGS = {
    400: "Bad request",
    401: "Log in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    422: "Not accepted",
    429: "Too many tries",
}


@dataclass(frozen=True)
class Flash:
    kind: str  # "ok" | "error" | "info"
    text: str


class Flashes:
    """One-time messages of a session, shown on the next page it loads (after a POST's redirect)."""

    MAX_PER_SESSION = 10

    def __init__(self) -> None:
        self._items: dict[str, list[Flash]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(request: Request) -> str | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        return hashlib.sha256(cookie.encode()).hexdigest() if cookie else None

    def add(self, request: Request, kind: str, text: str) -> None:
        key = self._key(request)
        if key is None:
            return
        with self._lock:
            items = self._items.setdefault(key, [])
            items.append(Flash(kind, text))
            del items[: -self.MAX_PER_SESSION]

    def pop(self, request: Request) -> list[Flash]:
        key = self._key(request)
        if key is None:
            return []
        with self._lock:
            return self._items.pop(key, [])


def flashes_of(request: Request) -> Flashes:
    found = getattr(request.app.state, "console_flashes", None)
    if not isinstance(found, Flashes):
        found = Flashes()
        request.app.state.console_flashes = found
    return found


def flash(request: Request, kind: str, text: str) -> None:
    flashes_of(request).add(request, kind, text)


def render(
    request: Request,
    template: str,
    principal: Principal | None,
    *,
    title: str,
    section: str = "",
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    from gateway import __version__

    nav = [
        {"key": key, "label": label, "href": href}
        for key, label, href, role in NAVIGATION
        if principal is not None and principal.has(role)
    ]
    context = {
        "principal": principal,
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "flashes": flashes_of(request).pop(request) if principal is not None else [],
        "nav": nav,
        "section": section,
        "title": title,
        "version": __version__,
        **values,
    }
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(url: str) -> RedirectResponse:
    """303 See Other: after a POST the browser loads ``url`` with GET."""
    return RedirectResponse(url, status_code=303)


def safe_next(value: str | None) -> str:
    """A local path to go to after login; anything else (another site, a scheme) becomes /."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def error_page(request: Request, status: int, message: str) -> Response:
    if status == 401:
        path = request.url.path
        target = path + (f"?{request.url.query}" if request.url.query else "")
        response: Response = redirect(f"/login?next={quote(target if request.method == 'GET' else '/')}")
        if request.cookies.get(SESSION_COOKIE):
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    principal = getattr(request.state, "principal", None)
    return render(
        request,
        "error.html",
        principal if isinstance(principal, Principal) else None,
        title=_HEADINGS.get(status, "Error"),
        status_code=status,
        status=status,
        heading=_HEADINGS.get(status, "Error"),
        message=message,
    )


class ConsoleRoute(APIRoute):
    """A console page: HTTP errors (from the role check too) become pages, 401 a redirect to /login."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except HTTPException as exc:
                return error_page(request, exc.status_code, str(exc.detail))
            except RequestValidationError as exc:
                problems = [
                    f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
                    for error in exc.errors()
                ]
                return error_page(request, 422, "; ".join(problems) or "invalid request")

        return handler
