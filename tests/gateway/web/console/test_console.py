"""The web console through its HTML forms: login, roles, CSRF, pages, live configuration, users, audit."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.routing import APIRoute

from gateway.audit.messages import AuditSource, Participant, encode, user_authentication
from gateway.web.app import PUBLIC_PATHS, _dependencies
from gateway.web.auth import RoleRequirement
from gateway.web.console import router as console_router
from tests.gateway.web.console.conftest import PASSWORD, Console

PAGES = ("/", "/studies", "/jobs", "/deliveries", "/configuration")


def _console_roles() -> dict[tuple[str, str], str | None]:
    """(method, path) -> role of each console route, read from its dependencies as route_roles does."""
    found: dict[tuple[str, str], str | None] = {}
    for route in console_router.routes:
        assert isinstance(route, APIRoute)
        roles = [dep.call.role for dep in _dependencies(route.dependant) if isinstance(dep.call, RoleRequirement)]
        for method in route.methods or ():
            found[(method, route.path)] = roles[0] if roles else None
    return found


def test_every_console_route_declares_a_role_or_is_public(console: Console) -> None:
    console_routes = _console_roles()
    assert ("GET", "/studies/{study_uid}/overlay/{sop_instance_uid}.png") in console_routes
    undeclared = {path for (_, path), role in console_routes.items() if role is None}
    assert undeclared == {"/login", "/static/console/{name}"}
    assert undeclared <= PUBLIC_PATHS
    assert console_routes[("POST", "/configuration/destinations")] == "admin"
    assert console_routes[("POST", "/deliveries/{delivery_id}/retry")] == "operator"
    assert console_routes[("GET", "/audit")] == "admin"


def test_a_page_without_a_session_redirects_to_the_login_page(console: Console) -> None:
    for page in (*PAGES, "/users", "/audit", "/studies/1.2.3"):
        response = console.client.get(page)
        assert response.status_code == 303, page
        assert response.headers["location"].startswith("/login?next=")
    assert console.client.get("/studies?state=failed").headers["location"] == "/login?next=/studies%3Fstate%3Dfailed"
    login = console.client.get("/login?next=/jobs")
    assert login.status_code == 200 and 'name="next" value="/jobs"' in login.text
    # a POST without a session changes nothing and goes to the login page too
    response = console.client.post("/configuration/destinations/archive/delete", data={"csrf_token": "x"})
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/"


def test_login_sets_the_session_and_goes_where_it_was_asked(console: Console) -> None:
    console.user("alice", "viewer")
    wrong = console.client.post("/login", data={"username": "alice", "password": "not her password", "next": "/jobs"})
    assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
    assert "gazex_session" not in console.client.cookies
    right = console.client.post("/login", data={"username": "alice", "password": PASSWORD, "next": "/jobs"})
    assert right.status_code == 303 and right.headers["location"] == "/jobs"
    assert (
        "httponly" in right.headers["set-cookie"].lower() and "samesite=strict" in right.headers["set-cookie"].lower()
    )
    for page in PAGES:
        response = console.client.get(page)
        assert response.status_code == 200, (page, response.text[:500])
        assert "alice" in response.text and "text/html" in response.headers["content-type"]
    # another site as "next" is not followed
    console.client.cookies.clear()
    offsite = console.client.post("/login", data={"username": "alice", "password": PASSWORD, "next": "//evil.test/"})
    assert offsite.headers["location"] == "/"


def test_a_role_too_weak_gets_a_403_page_and_the_navigation_hides_what_it_cannot_use(console: Console) -> None:
    csrf = console.log_in("vera", "viewer")
    for page in ("/users", "/audit"):
        response = console.client.get(page)
        assert response.status_code == 403 and "this needs the admin role" in response.text
        assert "<html" in response.text
    dashboard = console.client.get("/").text
    assert 'href="/users"' not in dashboard and 'href="/audit"' not in dashboard
    viewed = console.client.get("/configuration").text
    assert "Test connection" not in viewed and "C-ECHO" not in viewed  # operators test destinations
    assert 'id="add-destination"' not in viewed and "?edit=" not in viewed  # admins change them
    before = console.client.get("/configuration").text
    refused = console.post(
        "/configuration/destinations", {"name": "x", "ae_title": "X", "host": "127.0.0.1", "port": "104"}, csrf
    )
    assert refused.status_code == 403
    assert console.client.get("/configuration").text.count("data-destination=") == before.count("data-destination=")
    retry = console.post("/deliveries/1/retry", {}, csrf)
    assert retry.status_code == 403 and "operator" in retry.text


def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(console: Console) -> None:
    console.log_in("adam", "admin")
    response = console.client.post(
        "/configuration/destinations", data={"name": "pacs2", "ae_title": "PACS2", "host": "127.0.0.1", "port": "104"}
    )
    assert response.status_code == 403 and "CSRF" in response.text
    assert 'data-destination="pacs2"' not in console.client.get("/configuration").text
    wrong = console.post("/logout", {}, "not-the-token")
    assert wrong.status_code == 403
    assert console.client.get("/").status_code == 200  # still logged in


def test_an_admin_adds_and_removes_a_destination_and_a_bad_one_is_refused_with_the_reason(console: Console) -> None:
    csrf = console.log_in("adam", "admin")
    added = console.post(
        "/configuration/destinations",
        {"name": "pacs2", "ae_title": "PACS2", "host": "127.0.0.1", "port": "11113", "timeout_seconds": "5"},
        csrf,
    )
    assert added.status_code == 303 and added.headers["location"] == "/configuration"
    page = console.client.get("/configuration").text
    assert 'data-destination="pacs2"' in page and "destination pacs2 (revision 2)" in page
    bad = console.post(
        "/configuration/destinations", {"name": "pacs3", "ae_title": "PACS3", "host": "h", "port": "70000"}, csrf
    )
    assert bad.status_code == 422  # the form again, as filled in, with the reason
    assert (
        "Not changed" in bad.text and "65535" in bad.text and 'name="ae_title" maxlength="16" value="PACS3"' in bad.text
    )
    page = console.client.get("/configuration").text
    assert 'data-destination="pacs3"' not in page and "revision 2" in page
    console.post("/configuration/destinations/pacs2/delete", {}, csrf)
    page = console.client.get("/configuration").text
    assert 'data-destination="pacs2"' not in page and "revision 3" in page
    # the flash is shown once
    assert 'class="flash' not in console.client.get("/configuration").text


def test_callers_ae_titles_and_rules_through_the_forms(console: Console) -> None:
    csrf = console.log_in("adam", "admin")
    console.post("/configuration/callers", {"ae_title": "MODALITY1", "host": "10.0.0.7"}, csrf)
    console.post("/configuration/ae-titles", {"ae_titles": "GAZEX, GAZEX2"}, csrf)
    rule = "name: second\nmatch:\n  - modality: [DX]\ndestinations: [archive]\n"
    console.post("/configuration/rules", {"rule": rule}, csrf)
    console.post("/configuration/rules", {"rule": "name: [unclosed"}, csrf)
    page = console.client.get("/configuration").text
    assert "the rule is not YAML" in page
    assert "MODALITY1" in page and "10.0.0.7" in page and "<code>GAZEX2</code>" in page
    assert 'data-rule="second"' in page and 'data-rule="chest-radiograph"' in page
    broken = "name: third\nmatch:\n  - modality: {regex: '('}\n"
    console.post("/configuration/rules", {"rule": broken}, csrf)
    page = console.client.get("/configuration").text
    assert "does not compile" in page and 'data-rule="third"' not in page


def test_rules_test_on_an_unknown_study_says_so(console: Console) -> None:
    csrf = console.log_in("otto", "operator")
    response = console.post("/configuration/rules/test", {"study": "1.2.3.4"}, csrf)
    assert response.status_code == 303
    assert "no study 1.2.3.4 was received" in console.client.get("/configuration").text


def test_users_are_added_changed_and_deleted_by_an_admin(console: Console) -> None:
    csrf = console.log_in("adam", "admin")
    console.post("/users", {"username": "bob", "role": "viewer", "password": PASSWORD}, csrf)
    console.post("/users", {"username": "carol", "role": "viewer", "password": "short"}, csrf)
    page = console.client.get("/users").text
    assert "user bob added as viewer" in page and "not added: a password must have at least 12" in page
    console.post("/users/bob", {"role": "operator", "state": "disabled"}, csrf)
    assert [(u.role, u.disabled) for u in console.context.accounts.users() if u.username == "bob"] == [
        ("operator", True)
    ]
    console.post("/users/bob/delete", {}, csrf)
    assert "bob" not in {u.username for u in console.context.accounts.users()}


def test_the_audit_page_shows_the_last_messages_newest_first(console: Console) -> None:
    path = console.settings.audit_path
    path.parent.mkdir(parents=True, exist_ok=True)
    source = AuditSource("GAZEX@test")
    lines = [
        encode(
            user_authentication(
                login=True,
                user=Participant(f"user{index}", True, address="192.0.2.7"),
                node=Participant("GAZEX", False),
                source=source,
                when=datetime(2026, 1, 1, 10, index, tzinfo=UTC),
                success=index != 2,
            )
        )
        for index in range(3)
    ]
    path.write_bytes(b"\n".join([*lines, b"<not xml"]) + b"\n")
    console.log_in("adam", "admin")
    page = console.client.get("/audit?limit=3").text
    assert page.index("user2") < page.index("user1")
    assert "user0" not in page  # only the last three lines
    assert "(unreadable line)" in page and "192.0.2.7" in page and "User Authentication" in page


def test_logout_ends_the_session(console: Console) -> None:
    csrf = console.log_in("vera", "viewer")
    response = console.post("/logout", {}, csrf)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert console.client.get("/").status_code == 303


def test_static_files_are_public_and_only_ours(console: Console) -> None:
    css = console.client.get("/static/console/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert console.client.get("/static/console/../app.py").status_code in (303, 404)
    assert console.client.get("/static/console/secret.txt").status_code == 404
