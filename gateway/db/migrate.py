"""Schema migrations with Alembic; the scripts ship inside the package (``gateway/db/migrations``)."""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.db.engine import DatabaseError

SCRIPT_LOCATION = "gateway.db:migrations"


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against this gazex's migrations."""

    current: str | None
    head: str
    known: bool  # False: the database was migrated by a newer gazex

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["engine"] = engine
    return config


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return ScriptDirectory.from_config(config)


def head_revision() -> str:
    script = _scripts()
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise DatabaseError("the gazex package ships no database migrations; reinstall it")
    return head


def schema_status(engine: Engine) -> SchemaStatus:
    """The database's revision against this package's head."""
    script = _scripts()
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot read the schema revision of {engine.url!r}: {exc.__class__.__name__}: {exc}"
        ) from None
    known = current is None or any(rev.revision == current for rev in script.walk_revisions())
    return SchemaStatus(current=current, head=head_revision(), known=known)


def upgrade(engine: Engine, revision: str = "head") -> SchemaStatus:
    """Apply every pending migration; refuse a database migrated by a newer gazex."""
    status = schema_status(engine)
    if not status.known:
        raise DatabaseError(
            f"the database is at schema revision {status.current}, which this gazex does not know "
            f"(its newest is {status.head}): it was migrated by a newer gazex; upgrade gazex instead"
        )
    try:
        command.upgrade(alembic_config(engine), revision)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"migrating the database failed: {exc.__class__.__name__}: {exc}") from None
    return schema_status(engine)


def require_current(engine: Engine) -> None:
    """Raise :class:`DatabaseError` with what to do unless the schema is exactly this gazex's head."""
    status = schema_status(engine)
    if status.up_to_date:
        return
    if not status.known:
        raise DatabaseError(
            f"the database schema is at revision {status.current}, newer than this gazex knows ({status.head}); "
            "upgrade gazex"
        )
    current = status.current or "empty"
    raise DatabaseError(
        f"the database schema is at revision {current} but this gazex needs {status.head}; "
        "run `gazex db upgrade` (with the same --config), or set database.upgrade_on_start: true"
    )
