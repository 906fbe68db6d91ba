"""Database engines: SQLite (embedded default, WAL, durable commits) or PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker


class DatabaseError(Exception):
    """The database cannot be used: says which one, why, and what to do."""


def normalise_url(url: str) -> URL:
    """A SQLAlchemy URL; ``postgresql://`` means the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"database URL {url!r} cannot be parsed: {exc}") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise DatabaseError(
            f"database URL scheme {parsed.drivername!r} is not supported; "
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        )
    return parsed


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL with synchronous=FULL: every commit is fsynced, so an acknowledged instance survives a power cut."""
    if not isinstance(dbapi_connection, sqlite3.Connection):  # pragma: no cover - only SQLite engines get this
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def create_database_engine(url: str, *, create_directory: bool = True) -> Engine:
    """An engine for ``url``; for SQLite the file's directory is created and durable pragmas set."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise DatabaseError(
                "an in-memory SQLite database cannot hold the index; give a file: sqlite:///var/gazex.db"
            )
        if create_directory:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def describe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return normalise_url(url).render_as_string(hide_password=True)
    except DatabaseError:
        return "<unparsable URL>"
