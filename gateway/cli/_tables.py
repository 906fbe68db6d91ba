"""Plain-text tables for the operators' commands, and opening the database they read."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import Engine

from gateway.cli import CommandError
from gateway.config import Settings
from gateway.db import DatabaseError, create_database_engine, describe, require_current


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], max_width: int = 60) -> str:
    """Columns padded to their widest cell; cells longer than ``max_width`` are cut with an ellipsis."""

    def clip(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    text_rows = [[clip(cell(value)) for value in row] for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in text_rows]) for i, header in enumerate(headers)]
    lines = ["  ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(c.ljust(width) for c, width in zip(row, widths, strict=True)).rstrip() for row in text_rows]
    return "\n".join(lines)


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Engine]:
    """The configured database, at this gazex's schema (else a CommandError saying what to do)."""
    url = settings.database_url
    logging.getLogger("alembic").setLevel(logging.WARNING)  # reading the revision is not news
    try:
        engine = create_database_engine(url, create_directory=False)
    except DatabaseError as exc:
        raise CommandError(f"{describe(url)}: {exc}") from None
    try:
        try:
            require_current(engine)
        except DatabaseError as exc:
            raise CommandError(f"{describe(url)}: {exc}") from None
        yield engine
    finally:
        engine.dispose()
