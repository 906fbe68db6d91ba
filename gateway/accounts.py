"""Accounts of the console and API: users with roles, argon2id passwords, bearer tokens, sessions.

Roles are ordered: a *viewer* reads, an *operator* also retries, reprocesses and cancels, an
*admin* also changes the configuration and the users.  There is no default account: the first
admin is made with ``gazex users add NAME --role admin``.

Secrets are never stored: passwords as argon2id hashes (argon2-cffi, RFC 9106 parameters),
tokens and session cookies as their SHA-256 (they are 256-bit random values, so a fast hash is
enough).  A user that is disabled or deleted loses its sessions and tokens at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from gateway.db.models import ApiToken, User, WebSession

#: The roles, weakest first.
ROLES = ("viewer", "operator", "admin")
MIN_PASSWORD_LENGTH = 12
TOKEN_PREFIX = "gzx_"  # noqa: S105 - the prefix that marks a gazex token, not a secret
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (64 MiB, 3 passes)
_DUMMY_HASH = _HASHER.hash("not a password of anyone")  # verify against it when the user is unknown


class AccountError(Exception):
    """A refused account operation; ``kind`` is ``invalid``, ``not_found`` or ``conflict``."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Principal:
    """Who makes a request, and with which role."""

    user_id: int
    username: str
    role: str
    method: str  # "session" or "token"

    def has(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class UserView:
    username: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class TokenView:
    id: int
    username: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class NewSession:
    cookie: str  # the cookie's value, given to the browser once
    csrf_token: str
    expires_at: datetime


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password must have at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password or not password.isprintable():
        raise AccountError("a password must not start or end with spaces or hold control characters")
    return password


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class Accounts:
    """Users, tokens and sessions in the gateway's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- users ------------------------------------------------------------------------------
    def add_user(self, username: str, role: str, password: str) -> UserView:
        if not _USERNAME.match(username):
            raise AccountError(
                f"user name {username!r} must be 1-64 letters, digits or . _ @ -, starting with a letter or digit"
            )
        check_role(role)
        check_password(password)
        with Session(self.engine) as session, session.begin():
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                raise AccountError(f"user {username!r} exists already", "conflict")
            user = User(
                username=username,
                role=role,
                password_hash=_HASHER.hash(password),
                disabled=False,
                created_at=_now(),
            )
            session.add(user)
            session.flush()
            return _view(user)

    def users(self) -> list[UserView]:
        with Session(self.engine) as session:
            return [_view(user) for user in session.scalars(select(User).order_by(User.username))]

    def user(self, username: str) -> UserView:
        with Session(self.engine) as session:
            return _view(self._user(session, username))

    def has_users(self) -> bool:
        with Session(self.engine) as session:
            return session.scalar(select(User.id).limit(1)) is not None

    def update_user(
        self,
        username: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> tuple[UserView, UserView]:
        """Change a user; returns (before, after).  The last enabled admin cannot be demoted or disabled."""
        if role is not None:
            check_role(role)
        if password is not None:
            check_password(password)
        with Session(self.engine) as session, session.begin():
            user = self._user(session, username)
            before = _view(user)
            demoted = (role is not None and role != "admin") or disabled is True
            if user.role == "admin" and not user.disabled and demoted:
                self._keep_an_admin(session, user.id)
            if role is not None:
                user.role = role
            if disabled is not None:
                user.disabled = disabled
            if password is not None:
                user.password_hash = _HASHER.hash(password)
            if disabled or password is not None or (role is not None and role != before.role):
                session.execute(delete(WebSession).where(WebSession.user_id == user.id))
            if disabled:
                session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
            session.flush()
            return before, _view(user)

    def delete_user(self, username: str) -> UserView:
        with Session(self.engine) as session, session.begin():
            user = self._user(session, username)
            if user.role == "admin" and not user.disabled:
                self._keep_an_admin(session, user.id)
            view = _view(user)
            session.execute(delete(WebSession).where(WebSession.user_id == user.id))
            session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
            session.delete(user)
            return view

    @staticmethod
    def _user(session: Session, username: str) -> User:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise AccountError(f"no user {username!r}", "not_found")
        return user

    @staticmethod
    def _keep_an_admin(session: Session, user_id: int) -> None:
        others = session.scalar(
            select(User.id).where(User.role == "admin", User.disabled.is_(False), User.id != user_id).limit(1)
        )
        if others is None:
            raise AccountError("this is the last enabled admin; make another admin first", "conflict")

    def authenticate(self, username: str, password: str) -> Principal | None:
        """The user when the password is right and the account enabled; the same work either way."""
        with Session(self.engine) as session, session.begin():
            user = session.scalar(select(User).where(User.username == username))
            try:
                _HASHER.verify(user.password_hash if user is not None else _DUMMY_HASH, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return None
            if user is None or user.disabled:
                return None
            if _HASHER.check_needs_rehash(user.password_hash):
                user.password_hash = _HASHER.hash(password)
            user.last_login_at = _now()
            return Principal(user.id, user.username, user.role, "password")

    # -- bearer tokens ----------------------------------------------------------------------
    def create_token(self, username: str, name: str, *, expires_days: int | None = None) -> tuple[str, TokenView]:
        """A new token for the user: the secret (shown once) and its record."""
        if not name.strip() or len(name) > 64:
            raise AccountError("a token needs a name of 1 to 64 characters")
        if expires_days is not None and expires_days < 1:
            raise AccountError("a token's lifetime must be at least one day")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with Session(self.engine) as session, session.begin():
            user = self._user(session, username)
            if user.disabled:
                raise AccountError(f"user {username!r} is disabled", "conflict")
            now = _now()
            token = ApiToken(
                user_id=user.id,
                name=name.strip(),
                token_hash=_digest(secret),
                created_at=now,
                expires_at=now + timedelta(days=expires_days) if expires_days else None,
            )
            session.add(token)
            session.flush()
            return secret, TokenView(token.id, user.username, token.name, now, token.expires_at, None)

    def tokens(self, username: str | None = None) -> list[TokenView]:
        with Session(self.engine) as session:
            query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id)
            if username is not None:
                query = query.where(User.username == username)
            return [
                TokenView(t.id, name, t.name, t.created_at, t.expires_at, t.last_used_at)
                for t, name in session.execute(query)
            ]

    def revoke_token(self, token_id: int, *, username: str | None = None) -> TokenView:
        with Session(self.engine) as session, session.begin():
            query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
            query = query.where(ApiToken.id == token_id)
            if username is not None:
                query = query.where(User.username == username)
            row = session.execute(query).first()
            if row is None:
                raise AccountError(f"no token {token_id}", "not_found")
            token, owner = row
            view = TokenView(token.id, owner, token.name, token.created_at, token.expires_at, token.last_used_at)
            session.delete(token)
            return view

    def principal_for_token(self, secret: str) -> Principal | None:
        if not secret.startswith(TOKEN_PREFIX):
            return None
        now = _now()
        with Session(self.engine) as session, session.begin():
            row = session.execute(
                select(ApiToken, User)
                .join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_hash == _digest(secret))
            ).first()
            if row is None:
                return None
            token, user = row
            if user.disabled or (token.expires_at is not None and token.expires_at <= now):
                return None
            if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
                token.last_used_at = now  # at most once a minute: a scraper must not write on every request
            return Principal(user.id, user.username, user.role, "token")

    # -- console sessions -------------------------------------------------------------------
    def create_session(self, principal: Principal, minutes: int) -> NewSession:
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = _now()
        expires = now + timedelta(minutes=minutes)
        with Session(self.engine) as session, session.begin():
            session.execute(delete(WebSession).where(WebSession.expires_at <= now))
            session.add(
                WebSession(
                    user_id=principal.user_id,
                    session_hash=_digest(cookie),
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=expires,
                )
            )
        return NewSession(cookie, csrf, expires)

    def principal_for_session(self, cookie: str) -> tuple[Principal, str] | None:
        """The session's user and CSRF token, or None when unknown, expired or the user disabled."""
        with Session(self.engine) as session:
            row = session.execute(
                select(WebSession, User)
                .join(User, User.id == WebSession.user_id)
                .where(WebSession.session_hash == _digest(cookie))
            ).first()
            if row is None:
                return None
            web_session, user = row
            if user.disabled or web_session.expires_at <= _now():
                return None
            return Principal(user.id, user.username, user.role, "session"), web_session.csrf_token

    def end_session(self, cookie: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(delete(WebSession).where(WebSession.session_hash == _digest(cookie)))


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted secret (a CSRF token) with the expected one."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _view(user: User) -> UserView:
    return UserView(user.username, user.role, bool(user.disabled), user.created_at, user.last_login_at)
