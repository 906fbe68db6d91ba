"""The durable spool: received bytes go to a temporary file, are fsynced, renamed into place.

The write path, in order, for every instance:

1. :meth:`Spool.begin` refuses (:class:`OutOfSpaceError`) when free disk is below the reserve,
   before anything is written; otherwise it creates ``.incoming/<random>.partial``.
2. :meth:`IncomingFile.write` appends the received bytes and hashes them as they arrive; a
   full disk or the reserve being crossed mid-write deletes the partial file.
3. :meth:`Spool.commit` fsyncs the file, renames it atomically to its final path, then
   fsyncs the directory (and every directory it had to create).

Only one process may receive into a spool's incoming folder (an exclusive lock on ``.lock``),
so the partial files found there at start-up are leftovers of a crash and are removed.  Nodes
sharing one spool on shared storage each get a ``node_id``: their own ``.incoming-<node_id>``
folder and ``.lock-<node_id>`` lock, while the final paths (derived from UIDs and content
hashes) are common to all of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import logging
import os
import queue
import secrets
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, cast

from gateway.spool.paths import resolve_in

LOGGER = logging.getLogger(__name__)

INCOMING_DIR = ".incoming"
LOCK_FILE = ".lock"
PARTIAL_SUFFIX = ".partial"
FILE_MODE = 0o640
DIR_MODE = 0o750
#: Bytes written between two free-space checks while an instance streams in.
SPACE_CHECK_INTERVAL = 8 << 20
#: Bytes written between two early write-back requests (so the final fsync finds little to do).
WRITEBACK_INTERVAL = 2 << 20
#: Beyond this many bytes, a data set is written and hashed by a helper thread.
BACKGROUND_THRESHOLD = 1 << 20
_SYNC_FILE_RANGE_WRITE = 2


class SpoolError(Exception):
    """The spool cannot be used as asked."""


class OutOfSpaceError(SpoolError):
    """Free disk is below the reserve, or the disk filled up while writing."""


class SpoolLockedError(SpoolError):
    """Another process holds the spool."""


def disk_free_bytes(path: Path) -> int:
    """Bytes available to an unprivileged writer on the file system holding ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux ``sync_file_range(2)`` from libc, or None where there is none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], function)


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now (not a durability step: fsync still follows)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Pipeline:
    """Writes and hashes chunks in a helper thread, in order, beside the thread receiving them.

    ``os.write`` and hashlib release the GIL on large buffers, so writing and hashing one
    fragment overlaps with receiving the next.  A write error stops the writing and is kept
    in :attr:`error` for the owner to act on.
    """

    def __init__(self, fd: int, digest: Any, offset: int) -> None:
        self._fd = fd
        self._digest = digest
        self._offset = offset
        self._written_back = offset
        self.error: OSError | None = None
        self._chunks: queue.Queue[bytes | bytearray | memoryview | None] = queue.Queue(maxsize=64)
        self._done = False
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            if self.error is not None:
                continue  # drain without writing
            try:
                _write_all(self._fd, chunk)
            except OSError as exc:
                self.error = exc
                continue
            self._digest.update(chunk)
            self._offset += len(chunk)
            if self._offset - self._written_back >= WRITEBACK_INTERVAL:
                start_writeback(self._fd, self._written_back, self._offset - self._written_back)
                self._written_back = self._offset

    def put(self, chunk: bytes | bytearray | memoryview) -> None:
        self._chunks.put(chunk)

    def finish(self) -> None:
        """Wait until every chunk handed over is written and hashed."""
        if not self._done:
            self._done = True
            self._chunks.put(None)
            self._thread.join()


def fsync_directory(path: Path) -> None:
    """Make a directory's entries (a rename, a new file or directory) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IncomingFile:
    """One instance being received: a temporary file in the spool and the hash of its data set.

    The file starts with the DICOM preamble and File Meta Information (``header``); the
    data set bytes follow exactly as received.  ``content_sha256`` covers the data set bytes
    only, so the same data set received twice hashes the same whatever meta we write.
    Beyond the first MiB, writing and hashing move to a helper thread (:class:`_Pipeline`).
    Writes never raise: a failure is recorded in :attr:`failure`, the partial file is
    removed, and later writes are ignored, so the caller can drain the rest of the message.
    Call :meth:`complete` once the last fragment was handed over.
    """

    def __init__(self, spool: Spool, path: Path, fd: int, header: bytes) -> None:
        self._spool = spool
        self.path = path
        self._fd: int | None = fd
        self._hash = hashlib.sha256()
        self._pipeline: _Pipeline | None = None
        self._written_back = 0
        self.header_size = len(header)
        self.dataset_size = 0
        self.failure: str | None = None
        self.out_of_space = False
        self._since_space_check = 0
        self._finished = False
        try:
            _write_all(fd, header)
        except OSError as exc:
            self._write_failed(exc)

    @property
    def file_size(self) -> int:
        return self.header_size + self.dataset_size

    @property
    def content_sha256(self) -> str:
        """SHA-256 of the data set bytes (after :meth:`complete`)."""
        self.complete()
        return self._hash.hexdigest()

    @property
    def ok(self) -> bool:
        return self.failure is None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append received data set bytes (``data`` is neither copied nor kept after it is written)."""
        if self._fd is None or self.failure is not None:
            return
        pipeline = self._pipeline
        if pipeline is not None:
            if pipeline.error is not None:
                self.complete()
                return
            pipeline.put(data)
        else:
            try:
                _write_all(self._fd, data)
            except OSError as exc:
                self._write_failed(exc)
                return
            self._hash.update(data)
            written = self.header_size + self.dataset_size + len(data)
            if written - self._written_back >= WRITEBACK_INTERVAL:
                start_writeback(self._fd, self._written_back, written - self._written_back)
                self._written_back = written
            if self.dataset_size + len(data) >= BACKGROUND_THRESHOLD:
                self._pipeline = _Pipeline(self._fd, self._hash, written)
        self.dataset_size += len(data)
        self._since_space_check += len(data)
        if self._since_space_check >= SPACE_CHECK_INTERVAL:
            self._since_space_check = 0
            if not self._spool.has_room():
                self._fail("free disk fell below the reserve while receiving", out_of_space=True)

    def complete(self) -> None:
        """Wait for the helper thread, if any, and take over its failure."""
        pipeline = self._pipeline
        if pipeline is None:
            return
        pipeline.finish()
        if pipeline.error is not None and self.failure is None:
            self._write_failed(pipeline.error)

    def _write_failed(self, exc: OSError) -> None:
        self._fail(f"writing {self.path.name} failed: {exc.strerror}", out_of_space=exc.errno == errno.ENOSPC)

    def _fail(self, reason: str, *, out_of_space: bool) -> None:
        self.failure = reason
        self.out_of_space = out_of_space
        self.discard()

    def sync(self) -> None:
        """fsync and close the file (step 2, before the rename)."""
        self.complete()
        if self._fd is None:
            raise SpoolError(f"{self.path.name} is closed; it cannot be synced")
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Close and delete the temporary file unless it was committed; safe to call twice."""
        if self._pipeline is not None:
            self._pipeline.finish()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self._finished:
            self._finished = True
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _mark_committed(self) -> None:
        self._finished = True


class Spool:
    """The spool directory: ``<root>/<study>/<series>/<sop>.<hash>.dcm`` plus ``.incoming/``."""

    def __init__(
        self,
        root: Path,
        min_free_bytes: int,
        free_bytes: Callable[[Path], int] = disk_free_bytes,
        node_id: str | None = None,
    ) -> None:
        self.root = root
        self.node_id = node_id
        self.incoming_dir = root / (INCOMING_DIR if node_id is None else f"{INCOMING_DIR}-{node_id}")
        self.lock_path = root / (LOCK_FILE if node_id is None else f"{LOCK_FILE}-{node_id}")
        self.min_free_bytes = min_free_bytes
        self._free_bytes = free_bytes
        self._lock_fd: int | None = None

    # -- life cycle -------------------------------------------------------------------------
    def open(self) -> int:
        """Create the directories, take the exclusive lock, delete crash leftovers; returns how many."""
        try:
            self._make_dirs(self.incoming_dir)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool directory {self.root}: {exc.strerror}") from None
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = "another gazex process" if self.node_id is None else f"another gazex process as node {self.node_id}"
            raise SpoolLockedError(
                f"the spool {self.root} is in use by {who}; stop it, give this one its own storage.spool_dir, "
                "or (spool on shared storage) a distinct storage.node_id"
            ) from None
        self._lock_fd = fd
        removed = 0
        for leftover in self.incoming_dir.iterdir():
            if leftover.name.endswith(PARTIAL_SUFFIX):
                leftover.unlink()
                removed += 1
        if removed:
            fsync_directory(self.incoming_dir)
            LOGGER.warning("removed %d partial file(s) left in %s by an interrupted run", removed, self.incoming_dir)
        return removed

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # -- space ------------------------------------------------------------------------------
    def free_bytes(self) -> int:
        return self._free_bytes(self.root)

    def has_room(self) -> bool:
        return self.free_bytes() >= self.min_free_bytes

    # -- the write path ---------------------------------------------------------------------
    def begin(self, header: bytes) -> IncomingFile:
        """Start receiving an instance; :class:`OutOfSpaceError` before anything is written if below the reserve."""
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise OutOfSpaceError(f"free disk {free} bytes is below the reserve of {self.min_free_bytes} bytes")
        path = self.incoming_dir / f"{secrets.token_hex(16)}{PARTIAL_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        return IncomingFile(self, path, fd, header)

    def commit(self, incoming: IncomingFile, relpath: PurePosixPath | str) -> Path:
        """fsync, atomically rename into place, fsync the directory; returns the final path."""
        if not incoming.ok:
            raise SpoolError(f"cannot commit a failed incoming file: {incoming.failure}")
        final = resolve_in(self.root, relpath)
        incoming.sync()
        self._make_dirs(final.parent)
        os.rename(incoming.path, final)
        incoming._mark_committed()
        fsync_directory(final.parent)
        return final

    def path(self, relpath: PurePosixPath | str) -> Path:
        return resolve_in(self.root, relpath)

    def remove(self, relpath: PurePosixPath | str) -> None:
        """Delete a stored file (a replaced copy); a missing file is not an error."""
        path = resolve_in(self.root, relpath)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_directory(path.parent)

    def _make_dirs(self, directory: Path) -> None:
        """Create ``directory`` and missing parents, fsyncing each parent whose entries changed."""
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):  # another association created it a moment ago
                path.mkdir(mode=DIR_MODE)
            fsync_directory(path.parent)
