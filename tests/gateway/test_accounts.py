"""Accounts on a real database: argon2id hashes, roles, the last admin, tokens and sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.accounts import MIN_PASSWORD_LENGTH, AccountError, Accounts
from gateway.db import create_database_engine, upgrade
from gateway.db.models import ApiToken, User, WebSession

PASSWORD = "a long test password"  # noqa: S105 - a test account's password


@pytest.fixture
def accounts(tmp_path: Path) -> Accounts:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'gazex.db'}")
    upgrade(engine)
    return Accounts(engine)


def test_a_password_is_stored_as_an_argon2id_hash_and_checked(accounts: Accounts) -> None:
    accounts.add_user("alice", "admin", PASSWORD)
    with Session(accounts.engine) as session:
        stored = session.scalar(select(User.password_hash))
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored
    principal = accounts.authenticate("alice", PASSWORD)
    assert principal is not None and principal.role == "admin" and principal.has("operator")
    assert accounts.authenticate("alice", PASSWORD + "x") is None
    assert accounts.authenticate("nobody", PASSWORD) is None
    assert accounts.user("alice").last_login_at is not None


@pytest.mark.parametrize(
    ("username", "role", "password", "message"),
    [
        ("bob", "viewer", "short", f"at least {MIN_PASSWORD_LENGTH} characters"),
        ("bob", "root", PASSWORD, "role 'root' is not one of viewer, operator, admin"),
        ("bob smith", "viewer", PASSWORD, "must be 1-64 letters"),
        ("bob", "viewer", " " + PASSWORD, "must not start or end with spaces"),
    ],
)
def test_a_bad_account_is_refused_and_nothing_is_stored(
    accounts: Accounts, username: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(AccountError, match=message):
        accounts.add_user(username, role, password)
    assert accounts.users() == []


def test_a_name_is_taken_once(accounts: Accounts) -> None:
    accounts.add_user("alice", "viewer", PASSWORD)
    with pytest.raises(AccountError, match="exists already") as caught:
        accounts.add_user("alice", "admin", PASSWORD)
    assert caught.value.kind == "conflict"
    assert [user.role for user in accounts.users()] == ["viewer"]


def test_the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted(accounts: Accounts) -> None:
    accounts.add_user("alice", "admin", PASSWORD)
    for change in ({"role": "viewer"}, {"disabled": True}):
        with pytest.raises(AccountError, match="last enabled admin"):
            accounts.update_user("alice", **change)
    with pytest.raises(AccountError, match="last enabled admin"):
        accounts.delete_user("alice")
    accounts.add_user("root", "admin", PASSWORD)
    before, after = accounts.update_user("alice", role="operator")
    assert (before.role, after.role) == ("admin", "operator")


def test_a_token_is_stored_hashed_and_ends_with_its_user(accounts: Accounts) -> None:
    accounts.add_user("alice", "admin", PASSWORD)
    accounts.add_user("bob", "operator", PASSWORD)
    secret, view = accounts.create_token("bob", "scraper")
    assert secret.startswith("gzx_") and len(secret) > 40
    with Session(accounts.engine) as session:
        assert secret not in (session.scalar(select(ApiToken.token_hash)) or "")
    principal = accounts.principal_for_token(secret)
    assert principal is not None
    assert (principal.username, principal.role, principal.method) == ("bob", "operator", "token")
    assert accounts.principal_for_token(secret + "x") is None
    assert accounts.principal_for_token("not-a-token") is None
    accounts.update_user("bob", disabled=True)
    assert accounts.principal_for_token(secret) is None
    assert accounts.tokens("bob") == []  # disabling removes the tokens
    assert view.name == "scraper"


def test_an_expired_token_is_refused(accounts: Accounts) -> None:
    accounts.add_user("alice", "viewer", PASSWORD)
    secret, view = accounts.create_token("alice", "short", expires_days=1)
    assert accounts.principal_for_token(secret) is not None
    with Session(accounts.engine) as session, session.begin():
        session.execute(update(ApiToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert accounts.principal_for_token(secret) is None
    accounts.revoke_token(view.id)
    assert accounts.tokens() == []
    with pytest.raises(AccountError, match="no token"):
        accounts.revoke_token(view.id)


def test_a_session_gives_the_user_and_csrf_token_until_it_expires_or_the_password_changes(
    accounts: Accounts,
) -> None:
    accounts.add_user("alice", "operator", PASSWORD)
    principal = accounts.authenticate("alice", PASSWORD)
    assert principal is not None
    new = accounts.create_session(principal, minutes=5)
    found = accounts.principal_for_session(new.cookie)
    assert found is not None and found[0].username == "alice" and found[1] == new.csrf_token
    with Session(accounts.engine) as session:
        assert session.scalar(select(WebSession.session_hash)) != new.cookie
    accounts.update_user("alice", password=PASSWORD + "!")
    assert accounts.principal_for_session(new.cookie) is None
    again = accounts.create_session(principal, minutes=5)
    with Session(accounts.engine) as session, session.begin():
        session.execute(update(WebSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert accounts.principal_for_session(again.cookie) is None
    third = accounts.create_session(principal, minutes=5)
    accounts.end_session(third.cookie)
    assert accounts.principal_for_session(third.cookie) is None
