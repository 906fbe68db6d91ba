"""Where audit messages go: an append-only file, and a syslog collector over TLS.

:class:`AuditFile` writes each message as one line, opened with ``O_APPEND``, and fsyncs it
before returning, so a message that was written survives a crash.  The file is mode 0600 (it
holds Patient IDs, as the audit standard requires), and when log rotation renames or removes
it, the next message goes to a new file at the same path.

:class:`SyslogSender` sends each message to a collector as an RFC 5424 syslog message, framed
by octet counting (RFC 5425 over TLS, RFC 6587 over plain TCP), from a background thread fed by
a bounded queue: the caller never waits on the network.  It reconnects with backoff; what it
cannot send (queue full, collector down at shutdown) is counted and logged, without content.
The file stays the record of what happened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import ssl
import stat
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from gateway.audit.messages import MAJOR_FAILURE, MINOR_FAILURE, SERIOUS_FAILURE, SUCCESS

LOGGER = logging.getLogger(__name__)

#: RFC 5424 facility 10: security/authorization messages (authpriv).
FACILITY_AUTHPRIV = 10
#: RFC 5424 severity by EventOutcomeIndicator: notice, warning, error, critical.
SEVERITY_BY_OUTCOME = {SUCCESS: 5, MINOR_FAILURE: 4, SERIOUS_FAILURE: 3, MAJOR_FAILURE: 2}
#: MSGID of DICOM audit messages sent by syslog (PS3.15 A.6).
MSGID = "DICOM+RFC3881"
#: RFC 5424 MSG-UTF8 starts with a byte order mark.
BOM = b"\xef\xbb\xbf"


class AuditSink(Protocol):
    """Takes one encoded message (one line of XML) and its EventOutcomeIndicator."""

    def write(self, message: bytes, outcome: int) -> None: ...

    def close(self) -> None: ...


class AuditFile:
    """The append-only audit file: one message per line, fsynced, mode 0600, reopened after rotation."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self.written = 0
        self.failed = 0
        with self._lock:
            self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(f"{self.path} is not a regular file")
            if stat.S_IMODE(info.st_mode) & 0o077:
                os.fchmod(fd, 0o600)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._identity = (info.st_dev, info.st_ino)

    def _rotated(self) -> bool:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (info.st_dev, info.st_ino) != self._identity

    def write(self, message: bytes, outcome: int = SUCCESS) -> None:
        """Append ``message`` and a newline, then fsync; raises OSError when the disk refuses."""
        if b"\n" in message or b"\r" in message:
            raise ValueError("an audit message must be one line")
        line = message + b"\n"
        with self._lock:
            try:
                if self._fd is None or self._rotated():
                    self._close_fd()
                    self._open()
                assert self._fd is not None
                view = memoryview(line)
                while view:
                    done = os.write(self._fd, view)
                    view = view[done:]
                os.fsync(self._fd)
            except OSError:
                self.failed += 1
                raise
            self.written += 1

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close_fd()


# --- syslog ----------------------------------------------------------------------------------------


def _header_field(value: str | None, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, at most ``limit`` characters, or '-'."""
    if not value:
        return "-"
    cleaned = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in value)[:limit]
    return cleaned or "-"


def syslog_message(
    message: bytes,
    *,
    outcome: int,
    hostname: str,
    app_name: str,
    procid: str,
    when: datetime | None = None,
    facility: int = FACILITY_AUTHPRIV,
    msgid: str = MSGID,
) -> bytes:
    """One RFC 5424 SYSLOG-MSG: header, no structured data, the audit XML (with BOM) as MSG."""
    severity = SEVERITY_BY_OUTCOME.get(outcome, 4)
    stamp = (when or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    header = (
        f"<{facility * 8 + severity}>1 {stamp} {_header_field(hostname, 255)} {_header_field(app_name, 48)} "
        f"{_header_field(procid, 128)} {_header_field(msgid, 32)} -"
    )
    return header.encode("ascii") + b" " + BOM + message


def octet_frame(syslog_msg: bytes) -> bytes:
    """Octet-counting framing (RFC 5425 section 4.3, RFC 6587 section 3.4.1): ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(syslog_msg)).encode("ascii") + b" " + syslog_msg


@dataclass(frozen=True)
class SyslogTarget:
    """Where and how to reach the collector."""

    host: str
    port: int
    tls: bool = True
    ca_certificates: Path | None = None
    certificate: Path | None = None
    private_key: Path | None = None
    server_name: str | None = None  # the name to check in the collector's certificate; default: host

    def tls_context(self) -> ssl.SSLContext:
        """A client context that verifies the collector (CA file, or the system's), optionally with our certificate."""
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_certificates) if self.ca_certificates else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.certificate is not None:
            context.load_cert_chain(str(self.certificate), str(self.private_key) if self.private_key else None)
        return context


class SyslogSender:
    """Sends audit messages to a syslog collector from a background thread; never blocks the caller."""

    def __init__(
        self,
        target: SyslogTarget,
        *,
        hostname: str,
        app_name: str = "gazex",
        queue_size: int = 10_000,
        connect_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
    ) -> None:
        self.target = target
        self.hostname = hostname
        self.app_name = app_name
        self.procid = str(os.getpid())
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self._context = target.tls_context() if target.tls else None
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self.sent = 0
        self.dropped = 0
        self.connect_failures = 0
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-syslog", daemon=True)
        self._thread.start()

    # the caller's side

    def write(self, message: bytes, outcome: int = SUCCESS) -> None:
        """Queue one message; when the queue is full it is dropped, counted and logged (without content)."""
        framed = octet_frame(
            syslog_message(message, outcome=outcome, hostname=self.hostname, app_name=self.app_name, procid=self.procid)
        )
        try:
            self._queue.put_nowait(framed)
        except queue.Full:
            self._count_drop("the send queue is full")

    def _count_drop(self, why: str, count: int = 1) -> None:
        with self._lock:
            before = self.dropped
            self.dropped += count
        # the first loss, then every hundredth: the log must not flood while the collector is away
        if before == 0 or before // 100 != self.dropped // 100:
            LOGGER.warning(
                "audit syslog: %d message(s) not sent to %s:%d (%s); %d lost so far, the audit file keeps them",
                count,
                self.target.host,
                self.target.port,
                why,
                self.dropped,
            )

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds), then stop; what is left is counted lost."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            self._stop.set()
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(1.0)
        left = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                left += 1
        if left:
            self._count_drop("the gateway stopped before the collector took them", left)
        self._disconnect(graceful=True)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # the background thread

    def _connect(self) -> socket.socket:
        raw = socket.create_connection((self.target.host, self.target.port), timeout=self._connect_timeout)
        try:
            if self._context is not None:
                return self._context.wrap_socket(raw, server_hostname=self.target.server_name or self.target.host)
        except BaseException:
            raw.close()
            raise
        return raw

    def _disconnect(self, *, graceful: bool = False) -> None:
        """Close the connection.  ``graceful``: end TLS with close_notify and read what the collector
        sent (TLS 1.3 session tickets) until it closes: a socket closed with unread data sends a TCP
        reset, and a reset makes the collector's kernel discard the messages it has not read yet."""
        sock, self._socket = self._socket, None
        self.connected.clear()
        if sock is None:
            return
        if graceful:
            with contextlib.suppress(OSError, ValueError):
                sock.settimeout(2.0)
                plain = sock.unwrap() if isinstance(sock, ssl.SSLSocket) else sock
                plain.shutdown(socket.SHUT_WR)
                while plain.recv(4096):
                    pass
        with contextlib.suppress(OSError):
            sock.close()

    def _run(self) -> None:
        delay = self._backoff_initial
        pending: bytes | None = None
        while not self._stop.is_set():
            if pending is None:
                try:
                    pending = self._queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                if pending is None:  # close(): everything before it was sent
                    return
            try:
                if self._socket is None:
                    self._socket = self._connect()
                    self.connected.set()
                    LOGGER.info("audit syslog: connected to %s:%d", self.target.host, self.target.port)
                self._socket.sendall(pending)
            except (OSError, ssl.SSLError) as exc:
                self._disconnect()
                with self._lock:
                    self.connect_failures += 1
                # socket and TLS errors name no patient data; the reason helps (e.g. CERTIFICATE_VERIFY_FAILED)
                reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or ""
                LOGGER.warning(
                    "audit syslog: %s:%d unreachable (%s %s); retrying in %.1f s",
                    self.target.host,
                    self.target.port,
                    type(exc).__name__,
                    reason,
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_max)
                continue
            with self._lock:
                self.sent += 1
            pending = None
            delay = self._backoff_initial
        if pending is not None:
            self._count_drop("the gateway stopped before the collector took them")
