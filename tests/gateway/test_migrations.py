"""Alembic migrations: they build exactly the ORM's schema, and serve refuses an old or unknown one."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from gateway.db import DatabaseError, create_database_engine, require_current, schema_status, upgrade
from gateway.db.migrate import head_revision
from gateway.db.models import Base


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def test_migrations_build_the_models_schema(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_database")
    engine = create_database_engine(url)
    try:
        status = upgrade(engine)
        assert status.up_to_date and status.current == head_revision()
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            tables = set(inspect(connection).get_table_names())
        assert differences == []
        assert {"patients", "studies", "series", "instances", "instance_replacements", "alembic_version"} <= tables
        assert upgrade(engine).current == head_revision()  # idempotent
    finally:
        engine.dispose()


def test_sqlite_is_durable(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL
        assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    engine.dispose()


def test_an_old_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with pytest.raises(DatabaseError, match=r"revision empty but this gazex needs .*run `gazex db upgrade`"):
        require_current(engine)
    upgrade(engine)
    require_current(engine)
    engine.dispose()


def test_a_schema_from_a_newer_gazex_is_refused(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'new.db'}")
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    assert not schema_status(engine).known
    with pytest.raises(DatabaseError, match="migrated by a newer gazex"):
        upgrade(engine)
    with pytest.raises(DatabaseError, match="newer than this gazex knows"):
        require_current(engine)
    engine.dispose()


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(DatabaseError, match="not supported"):
        create_database_engine("mysql://x@y/z")
    with pytest.raises(DatabaseError, match="in-memory SQLite"):
        create_database_engine("sqlite://")
