"""Alembic environment: runs migrations on the engine :mod:`gateway.db.migrate` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

from gateway.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("gazex migrations need an engine (gateway.db.migrate) or sqlalchemy.url")
        engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():  # pragma: no cover - gazex only migrates online
    raise RuntimeError("offline (SQL script) migrations are not supported; use `gazex db upgrade`")
run_migrations_online()
