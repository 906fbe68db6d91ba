"""gateway.db.locks: on SQLite the lock is the write lock, so it must come before the first write.

(That it serialises claimers across threads and processes, on SQLite and PostgreSQL, is shown by
tests/gateway/pull/test_ledger.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.db import create_database_engine
from gateway.db.locks import PULL_CLAIMS, hold_until_commit


def test_on_sqlite_the_lock_taken_after_a_write_is_refused_not_silently_late(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'locks.db'}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
        with engine.begin() as connection:
            hold_until_commit(connection, PULL_CLAIMS)  # first: the write lock is taken at once
            connection.execute(text("INSERT INTO t VALUES (1)"))
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (2)"))
            with pytest.raises(RuntimeError, match="before the transaction's first write"):
                hold_until_commit(connection, PULL_CLAIMS)
        with engine.connect() as connection:
            assert list(connection.scalars(text("SELECT x FROM t ORDER BY x"))) == [1, 2]
    finally:
        engine.dispose()
