"""This installation's id: generated once (by migration 0003) and kept in the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.exc import IntegrityError

from gateway.db.models import Installation

INSTALLATION: Table = Installation.__table__  # type: ignore[assignment]


def installation_id(engine: Engine) -> str:
    """The installation id of the database behind ``engine``; made (once) if its row is missing."""
    query = select(INSTALLATION.c.installation_id).where(INSTALLATION.c.id == 1)
    with engine.connect() as connection:
        found = connection.execute(query).scalar()
    if found:
        return str(found)
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(INSTALLATION).values(id=1, installation_id=str(uuid.uuid4()), created_at=datetime.now(UTC))
            )
    except IntegrityError:  # another process made it first: theirs is the one
        pass
    with engine.connect() as connection:
        return str(connection.execute(query).scalar_one())
