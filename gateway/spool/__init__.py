"""The durable spool of received instances."""

from gateway.spool.paths import instance_relpath, resolve_in, safe_uid_component
from gateway.spool.spool import IncomingFile, OutOfSpaceError, Spool, SpoolError, SpoolLockedError, disk_free_bytes

__all__ = [
    "IncomingFile",
    "OutOfSpaceError",
    "Spool",
    "SpoolError",
    "SpoolLockedError",
    "disk_free_bytes",
    "instance_relpath",
    "resolve_in",
    "safe_uid_component",
]
