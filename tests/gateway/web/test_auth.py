"""Logging in and out, sessions with CSRF, bearer tokens, users and the request guards."""

from __future__ import annotations

from pathlib import Path

from tests.gateway.web.support import PASSWORD, WebApp, web_app


def login(web: WebApp, username: str, password: str = PASSWORD) -> str:
    response = web.client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return csrf


def test_a_login_sets_an_httponly_strict_cookie_and_is_audited(web: WebApp) -> None:
    web.accounts.add_user("alice", "operator", PASSWORD)
    response = web.client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert "gazex_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; with http.tls the cookie is Secure
    assert web.client.get("/api/v1/auth/me").json() == {"username": "alice", "role": "operator", "method": "session"}
    assert web.observer.logins == [("alice", "testclient", True, "password")]


def test_a_wrong_password_is_401_audited_and_opens_no_session(web: WebApp) -> None:
    web.accounts.add_user("alice", "admin", PASSWORD)
    response = web.client.post("/api/v1/auth/login", json={"username": "alice", "password": "wrong password!"})
    assert response.status_code == 401 and "wrong user name or password" in response.json()["detail"]
    assert "set-cookie" not in response.headers
    assert web.client.get("/api/v1/auth/me").status_code == 401
    assert web.observer.logins == [("alice", "testclient", False, "password")]


def test_many_failed_logins_from_one_address_are_throttled(web: WebApp) -> None:
    web.accounts.add_user("alice", "admin", PASSWORD)
    codes = [
        web.client.post("/api/v1/auth/login", json={"username": "alice", "password": f"guess number {n}"}).status_code
        for n in range(12)
    ]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    # even the right password is refused while throttled, unchecked
    assert web.client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}).status_code == 429


def test_an_unsafe_request_on_a_session_needs_the_csrf_token(web: WebApp) -> None:
    web.accounts.add_user("alice", "admin", PASSWORD)
    csrf = login(web, "alice")
    body = {"username": "bob", "role": "viewer", "password": PASSWORD}
    refused = web.client.post("/api/v1/users", json=body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = web.client.post("/api/v1/users", json=body, headers={"X-CSRF-Token": csrf + "x"})
    assert wrong.status_code == 403
    assert [user.username for user in web.accounts.users()] == ["alice"]  # nothing changed
    made = web.client.post("/api/v1/users", json=body, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201 and made.json()["role"] == "viewer"


def test_a_form_post_may_carry_the_csrf_token_as_a_field(web: WebApp) -> None:
    web.accounts.add_user("alice", "viewer", PASSWORD)
    csrf = login(web, "alice")
    assert web.client.post("/api/v1/auth/logout", data={"csrf_token": "nope"}).status_code == 403
    assert web.client.post("/api/v1/auth/logout", data={"csrf_token": csrf}).status_code == 204
    assert web.client.get("/api/v1/auth/me").status_code == 401
    assert web.observer.logouts == ["alice"]


def test_a_bearer_token_needs_no_csrf_token_and_a_bad_one_is_401(web: WebApp) -> None:
    headers = web.bearer("admin")
    body = {"username": "carol", "role": "operator", "password": PASSWORD}
    assert web.client.post("/api/v1/users", json=body, headers=headers).status_code == 201
    bad = web.client.get("/api/v1/users", headers={"Authorization": "Bearer gzx_nothing"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"].startswith("Bearer")
    assert web.client.get("/api/v1/users", headers={"Authorization": "Basic YTpi"}).status_code == 401
    assert ("-", "testclient", False, "token") in web.observer.logins


def test_users_are_managed_by_an_admin_and_each_change_is_audited(web: WebApp) -> None:
    admin = web.bearer("admin")
    made = web.client.post(
        "/api/v1/users", json={"username": "dave", "role": "viewer", "password": PASSWORD}, headers=admin
    )
    assert made.status_code == 201
    changed = web.client.patch("/api/v1/users/dave", json={"role": "operator"}, headers=admin)
    assert changed.status_code == 200 and changed.json()["role"] == "operator"
    assert web.client.delete("/api/v1/users/dave", headers=admin).status_code == 204
    assert web.client.delete("/api/v1/users/dave", headers=admin).status_code == 404
    summaries = [change.summary for change in web.observer.changes]
    assert summaries == ["user dave added as viewer", "user dave changed: role", "user dave deleted"]
    assert web.observer.changes[1].before["role"] == "viewer" and web.observer.changes[1].after["role"] == "operator"
    assert all("password" not in str(change.after) for change in web.observer.changes)


def test_bad_user_input_is_a_4xx_with_a_message_and_changes_nothing(web: WebApp) -> None:
    admin = web.bearer("admin")
    before = web.accounts.users()
    cases = [
        (
            {"username": "eve", "role": "viewer", "password": PASSWORD, "colour": "red"},
            422,
            "body.colour: Extra inputs",
        ),
        ({"username": "eve", "role": "superuser", "password": PASSWORD}, 422, "role 'superuser' is not one of"),
        ({"username": "eve", "role": "viewer", "password": "short"}, 422, "at least 12 characters"),
        ({"username": "eve", "role": "viewer"}, 422, "body.password: Field required"),
    ]
    for body, status, message in cases:
        response = web.client.post("/api/v1/users", json=body, headers=admin)
        assert response.status_code == status and message in response.json()["detail"], response.text
    malformed = web.client.post(
        "/api/v1/users", content=b"{not json", headers={**admin, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 422 and "JSON" in malformed.json()["detail"]
    assert web.accounts.users() == before


def test_tokens_are_listed_and_revoked_by_their_owner_only(web: WebApp) -> None:
    viewer = web.bearer("viewer")
    made = web.client.post("/api/v1/tokens", json={"name": "laptop", "expires_days": 30}, headers=viewer)
    assert made.status_code == 201 and made.json()["token"].startswith("gzx_")
    other = web.bearer("operator")
    mine = web.client.get("/api/v1/tokens", headers=other).json()
    assert [token["username"] for token in mine] == ["operator-1"]
    assert web.client.delete(f"/api/v1/tokens/{made.json()['id']}", headers=other).status_code == 404
    assert web.client.delete(f"/api/v1/tokens/{made.json()['id']}", headers=viewer).status_code == 204
    new_secret = made.json()["token"]
    assert web.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {new_secret}"}).status_code == 401


def test_an_oversized_body_is_413_before_any_route_reads_it(tmp_path: Path) -> None:
    app = web_app(tmp_path, http={"max_upload_bytes": 1024})
    with app.client:
        admin = app.bearer("admin")
        response = app.client.post(
            "/api/v1/users", content=b"x" * 4096, headers={**admin, "Content-Type": "application/json"}
        )
        assert response.status_code == 413 and "http.max_upload_bytes" in response.json()["detail"]
    app.engine.dispose()


def test_api_answers_are_not_cached_and_carry_the_security_headers(web: WebApp) -> None:
    response = web.client.get("/api/v1/auth/me", headers=web.bearer("viewer"))
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_the_probes_need_no_login_and_readyz_says_what_is_missing(web: WebApp) -> None:
    assert web.client.get("/healthz").json() == {"status": "ok"}
    ready = web.client.get("/readyz")
    assert ready.status_code == 503  # no DICOM node and no pipeline in this process
    checks = {check["name"]: check for check in ready.json()["checks"]}
    assert checks["database"]["ok"] is True
    assert checks["dicom"]["ok"] is False and "not accepting" in checks["dicom"]["detail"]
    assert checks["model"]["ok"] is False
