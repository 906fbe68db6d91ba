"""Critical sections across threads and processes that share the database, one transaction long.

A check-then-claim (count what runs, then claim one more if the count allows) is only atomic if
no other claimer counts in between.  Row claims (``gateway.pipeline.leases``) need no such lock:
one conditional UPDATE decides them.  A limit over *many* rows does: :func:`hold_until_commit`
serialises the transactions that take the same key, on either database:

* PostgreSQL: ``pg_advisory_xact_lock(key)``, released when the transaction ends.  Only
  transactions taking the same key wait; readers and other writers do not.  At READ COMMITTED
  (the engines' default) every statement after the lock sees what the previous holder
  committed, because PostgreSQL releases the lock after the commit is visible.
* SQLite: ``BEGIN IMMEDIATE``: the database's write lock (one per file), taken before the first
  read, waiting up to the engine's ``busy_timeout``.  Without it pysqlite reads outside any
  transaction until the first write, so two claimers could both count before either writes.
  The key does not matter there: SQLite has one writer at a time anyway.

The holder must keep the transaction short: database statements only, no network I/O.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import Connection, text

#: The key of the pull ledger's retrieve claims (``gateway.pull.ledger``): 'gazxpull' in ASCII.
#: A key names one critical section for the whole database; add new ones here, each distinct.
PULL_CLAIMS = 0x67617A7870756C6C


def hold_until_commit(connection: Connection, key: int) -> None:
    """Take the lock ``key`` until the connection's transaction ends (commit or rollback).

    Call it first in the transaction, before anything is read: what was read before it may be
    stale.  On SQLite the transaction must not have written yet (it cannot be upgraded then).
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return
    driver = connection.connection.driver_connection
    if isinstance(driver, sqlite3.Connection) and driver.in_transaction:
        raise RuntimeError("hold_until_commit must come before the transaction's first write on SQLite")
    connection.exec_driver_sql("BEGIN IMMEDIATE")
