"""Health of a running gateway, as a container or service manager sees it: ``gazex health``.

Each check looks at one thing ``gazex serve`` needs and says, in one line, what it found:

* ``database``: the configured database answers and its schema is this gazex's newest;
* ``spool``: the spool directory exists, a file can be written and fsynced in it, and its
  disk has more free space than the reserve (below it every C-STORE is refused with 0xA700);
* ``outbox``: the same for the outbox, where results wait for delivery;
* ``listener``: something accepts TCP connections on the DICOM port.

The listener check only opens and closes a TCP connection: no association, so it works
whatever the allowed callers and TLS settings are, and the server logs nothing for it (a
C-ECHO would log three lines per probe, and would be rejected when loopback callers are not
allowed).  No check writes to the database or leaves a file behind.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Settings
from gateway.db import DatabaseError, create_database_engine, describe, schema_status
from gateway.spool.spool import disk_free_bytes

#: Addresses that mean "every interface": the check then connects over loopback.
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}  # noqa: S104 - names of the wildcard, not a bind


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: its name, whether it passed and what it found."""

    name: str
    ok: bool
    detail: str


def check_database(url: str) -> CheckResult:
    """The database answers and its schema revision is this gazex's head."""
    name = "database"
    where = describe(url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return CheckResult(name, False, f"{where} does not exist; `gazex serve` or `gazex db upgrade` creates it")
    engine = None
    try:
        engine = create_database_engine(url, create_directory=False)
        status = schema_status(engine)
    except DatabaseError as exc:
        return CheckResult(name, False, f"{where}: {exc}")
    finally:
        if engine is not None:
            engine.dispose()
    if status.up_to_date:
        return CheckResult(name, True, f"{where}: schema revision {status.current}")
    if not status.known:
        return CheckResult(name, False, f"{where}: schema revision {status.current} is newer than this gazex")
    return CheckResult(
        name,
        False,
        f"{where}: schema revision {status.current or '(empty)'}, {status.head} needed; run `gazex db upgrade`",
    )


def check_spool(
    spool: Path, min_free_bytes: int, free_bytes: Callable[[Path], int] = disk_free_bytes, *, name: str = "spool"
) -> CheckResult:
    """A data directory (the spool, or the outbox) exists, takes a written and fsynced file, and
    has more free disk than the reserve."""
    if not spool.is_dir():
        return CheckResult(name, False, f"{spool} is not a directory; `gazex serve` creates it at start-up")
    probe = spool / f".health-{secrets.token_hex(8)}.probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"gazex health\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        return CheckResult(name, False, f"{spool} cannot be written: {exc.strerror}; check its owner and mount")
    free = free_bytes(spool)
    if free < min_free_bytes:
        return CheckResult(
            name,
            False,
            f"{spool}: {_size(free)} free, below the reserve of {_size(min_free_bytes)} "
            "(storage.min_free_disk): nothing is written there until space is freed",
        )
    return CheckResult(name, True, f"{spool}: writable, {_size(free)} free (reserve {_size(min_free_bytes)})")


def check_listener(host: str, port: int, timeout: float) -> CheckResult:
    """Something accepts TCP connections on ``host:port`` (the wildcard address is checked over loopback)."""
    name = "listener"
    target = "127.0.0.1" if host in _WILDCARD_HOSTS else host
    try:
        with socket.create_connection((target, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return CheckResult(
            name, False, f"nothing accepts connections on {target}:{port} ({reason}); is gazex serve up?"
        )
    return CheckResult(name, True, f"{target}:{port} accepts connections")


def run_checks(settings: Settings, *, timeout: float = 5.0, listener: bool = True) -> list[CheckResult]:
    """Every check, in order: database, spool, outbox, then (unless ``listener`` is false) the DICOM port."""
    reserve = int(settings.storage.min_free_disk)
    results = [
        check_database(settings.database_url),
        check_spool(settings.storage.spool_path, reserve),
        check_spool(settings.storage.outbox_path, reserve, name="outbox"),
    ]
    if listener:
        results.append(check_listener(settings.dicom.host, settings.dicom.port, timeout))
    return results


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
