"""Every route against every role, anonymous included: 401, 403, or let through.

The routes are found on the app itself, so a route added later is covered without editing
this file; a route that declares no role and is not public fails the first test.
"""

from __future__ import annotations

import re

import pytest

from gateway.accounts import ROLES
from gateway.web import PUBLIC_PATHS, route_roles
from tests.gateway.web.support import PASSWORD, WebApp

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def concrete(path: str) -> str:
    """A path template with its parameters filled by values no real object has."""
    return (
        re.sub(r"\{[^}]*(id|_pk)\}", "999999", re.sub(r"\{[^}:]*:path\}", "no/such/thing", path))
        .replace("{", "")
        .replace("}", "")
        if "{" in path
        else path
    )


def routes(web: WebApp) -> dict[tuple[str, str], str | None]:
    return {key: role for key, role in route_roles(web.client.app).items() if key[0] != "HEAD"}  # type: ignore[arg-type]


def call(web: WebApp, method: str, path: str, headers: dict[str, str]) -> int:
    body: dict[str, object] | None = {} if method in UNSAFE else None
    response = web.client.request(method, concrete(path), headers=headers, follow_redirects=False, json=body)
    return response.status_code


def test_every_route_is_public_or_declares_a_role(web: WebApp) -> None:
    undeclared = [
        f"{method} {path}" for (method, path), role in routes(web).items() if role is None and path not in PUBLIC_PATHS
    ]
    assert undeclared == [], "routes without require(role) and not in PUBLIC_PATHS"
    assert len(routes(web)) >= 10


def test_anonymous_requests_are_refused_everywhere_but_the_public_routes(web: WebApp) -> None:
    for (method, path), role in routes(web).items():
        if role is None:
            continue
        status = call(web, method, path, {})
        if path.startswith("/api/"):
            assert status == 401, f"{method} {path} answered {status} to an anonymous request"
        else:  # console pages send a browser to the login page
            assert status in (401, 303), f"{method} {path} answered {status} to an anonymous request"


@pytest.mark.parametrize("caller", ROLES)
def test_each_role_reaches_exactly_the_routes_of_its_rank(web: WebApp, caller: str) -> None:
    headers = web.bearer(caller)
    for (method, path), role in routes(web).items():
        if role is None:
            continue
        status = call(web, method, path, headers)
        if ROLES.index(caller) < ROLES.index(role):
            assert status == 403, f"{caller} got {status} from {method} {path}, which needs {role}"
        else:
            assert status not in (401, 403), f"{caller} was refused ({status}) by {method} {path}, which needs {role}"


def test_no_unsafe_route_runs_for_a_session_without_the_csrf_token(web: WebApp) -> None:
    web.accounts.add_user("root", "admin", PASSWORD)
    web.accounts.add_user("spare", "admin", PASSWORD)  # so that nothing is refused for being the last admin
    login = web.client.post("/api/v1/auth/login", json={"username": "root", "password": PASSWORD})
    assert login.status_code == 200
    for (method, path), role in routes(web).items():
        if role is None or method not in UNSAFE:
            continue
        status = call(web, method, path, {})
        assert status == 403, f"{method} {path} answered {status} without the CSRF token"
