"""Sending files to a destination: the interface, the C-STORE SCU behind it, and an in-memory fake.

:class:`StoreSender` opens one association per delivery attempt, proposing the SOP classes of
the outputs to send (each with Explicit and Implicit VR Little Endian; pynetdicom converts
between them), over DICOM TLS with an optional client certificate when the destination asks
for it.  Failures to connect or associate, and an association lost mid-way, become
:class:`SendError` with the reason in words; a C-STORE answered with a failure status is a
status, not an exception.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from gateway.config.pipeline import Destination, DestinationTLS
from gateway.dicom.echo import TIMEOUT_MARGIN, _association_failure, preflight
from gateway.dicom.tls import TLSConfigError, client_context

#: The transfer syntaxes proposed for every SOP class sent, in order of preference.  Outputs are
#: written in Explicit VR Little Endian; pynetdicom converts to Implicit VR when only that is accepted.
PROPOSED_TRANSFER_SYNTAXES: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


class SendError(Exception):
    """The destination could not be reached, refused us, or the association broke; says which.

    ``retry_after``: seconds the destination asked us to wait (HTTP Retry-After), if it did.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Session(Protocol):
    def send(self, path: Path) -> int:
        """C-STORE one file; the response status (raises SendError when no response came)."""
        ...


@dataclass(frozen=True)
class InstanceResult:
    """One instance's result in a response that covers several (STOW-RS): a DICOM status
    (acknowledged when a success or warning, see :func:`gateway.pipeline.states.acknowledged`),
    or None when the response did not say; ``reason`` says why in words when it was not stored."""

    status: int | None
    reason: str | None = None


@runtime_checkable
class BatchSession(Protocol):
    """A session that sends several instances per request; the Deliverer uses it when a session has it."""

    batch_size: int

    def send_batch(self, instances: Sequence[tuple[str, Path]]) -> list[InstanceResult]:
        """Send (SOP Instance UID, outbox file) pairs in one request; one result per pair, in order."""
        ...


class Sender(Protocol):
    def open(
        self, name: str, destination: Destination, calling_ae_title: str, sop_classes: Sequence[str]
    ) -> contextlib.AbstractContextManager[Session]:
        """An association to ``destination`` proposing ``sop_classes``; raises SendError."""
        ...


def tls_context(destination: Destination) -> ssl.SSLContext | None:
    return dicom_tls_context(destination.tls)


def dicom_tls_context(tls: DestinationTLS) -> ssl.SSLContext | None:
    """The client TLS context of a DICOM peer we call (a destination, a pull source); SendError when
    its files cannot be used; None when TLS is off."""
    if not tls.enabled:
        return None
    try:
        return client_context(
            ca_certificates=tls.ca_certificates,
            certificate=tls.certificate,
            private_key=tls.private_key,
            verify=tls.verify,
            minimum_version=tls.minimum_version,
        )
    except TLSConfigError as exc:
        raise SendError(str(exc)) from None


class _StoreSession:
    def __init__(self, assoc: Association, where: str, timeout: float) -> None:
        self._assoc = assoc
        self._where = where
        self._timeout = timeout

    def send(self, path: Path) -> int:
        if not self._assoc.is_established:
            raise SendError(f"the association with {self._where} ended before everything was sent")
        try:
            dataset = pydicom.dcmread(path)
        except FileNotFoundError:
            raise
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise SendError(f"the outbox file {path.name} cannot be read: {type(exc).__name__}") from None
        started = time.monotonic()
        try:
            response = self._assoc.send_c_store(dataset)
        except ValueError as exc:  # no accepted presentation context for the SOP class / transfer syntax
            raise SendError(f"{self._where} accepted no presentation context for this object: {exc}") from None
        except (OSError, RuntimeError) as exc:
            raise SendError(f"sending to {self._where} failed: {type(exc).__name__}") from None
        if response is None or "Status" not in response:
            if time.monotonic() - started >= self._timeout * TIMEOUT_MARGIN:
                raise SendError(f"timed out: no C-STORE response from {self._where} within {self._timeout:g} s")
            raise SendError(f"no C-STORE response from {self._where}: the association was aborted")
        return int(response.Status)


def keep_responses(assoc: Association) -> None:
    """Work around a race in pynetdicom 3's requestor (it pins ``pynetdicom<4``).

    ``send_c_store`` pauses the association's reactor thread by clearing a checkpoint and
    waiting for ``_is_paused``; but the reactor sets ``_is_paused`` *before* it waits, so it can
    pass the checkpoint just before the clear, then take the C-STORE response off the DIMSE queue
    as if it were a request and drop it ("Received unexpected C_STORE service message"); the
    sender then waits for the DIMSE timeout.  A fast peer makes this likely (about 1 association
    in 130 here with ``TCP_NODELAY``).  Here a response the reactor takes is put back for the
    sender instead.
    """
    serve = assoc._serve_request

    def serve_requests_only(msg: Any, context_id: int) -> None:
        if not msg.is_valid_request:
            assoc.dimse.msg_queue.put((context_id, msg))
            return
        serve(msg, context_id)

    assoc._serve_request = serve_requests_only  # type: ignore[method-assign]


def _no_delay(assoc: Association) -> None:
    """Send each PDU at once (TCP_NODELAY): with Nagle's algorithm a small C-STORE waits for the
    peer's delayed ACK, about 40 ms per object on Linux."""
    raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class StoreSender:
    """The real C-STORE SCU (pynetdicom)."""

    def open(
        self, name: str, destination: Destination, calling_ae_title: str, sop_classes: Sequence[str]
    ) -> contextlib.AbstractContextManager[Session]:
        return self._session(name, destination, calling_ae_title, sop_classes)

    @contextlib.contextmanager
    def _session(
        self, name: str, destination: Destination, calling_ae_title: str, sop_classes: Sequence[str]
    ) -> Iterator[Session]:
        where = f"destination {name} ({destination.ae_title}@{destination.host}:{destination.port})"
        tls = tls_context(destination)
        ae = AE(ae_title=calling_ae_title)
        for sop_class in dict.fromkeys(sop_classes):
            ae.add_requested_context(sop_class, list(PROPOSED_TRANSFER_SYNTAXES))
        timeout = destination.timeout_seconds
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
        started = time.monotonic()
        assoc = ae.associate(
            destination.host,
            destination.port,
            ae_title=destination.ae_title,
            tls_args=(tls, destination.host) if tls is not None else None,
        )
        failure = _association_failure(assoc, waited=time.monotonic() - started, timeout=timeout)
        if failure is not None:
            if not assoc.is_rejected:  # pynetdicom reports every transport problem as an abort: find out which
                failure = (
                    preflight(destination.host, destination.port, timeout=destination.timeout_seconds, tls=tls)
                    or failure
                )
            ae.shutdown()
            raise SendError(f"{where}: {failure}")
        keep_responses(assoc)
        _no_delay(assoc)
        try:
            yield _StoreSession(assoc, where, timeout)
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()


class TypedSender:
    """Picks the sender by the destination's ``type`` (``dicom``: C-STORE, ``dicomweb``: STOW-RS)."""

    def __init__(self, senders: Mapping[str, Sender]) -> None:
        self.senders = dict(senders)

    def open(
        self, name: str, destination: Destination, calling_ae_title: str, sop_classes: Sequence[str]
    ) -> contextlib.AbstractContextManager[Session]:
        kind = getattr(destination, "type", "dicom")
        sender = self.senders.get(kind)
        if sender is None:
            raise SendError(f"destination {name}: no sender for type {kind!r}")
        return sender.open(name, destination, calling_ae_title, sop_classes)


# -- the in-memory fake, for unit tests of the delivery decisions -------------------------


@dataclass
class FakeDestination:
    """What a fake destination does: refuse associations, or answer each SOP Instance UID with a status."""

    reachable: bool = True
    statuses: dict[str, int] = field(default_factory=dict)  # SOP Instance UID -> status (default 0x0000)
    fail_after: int | None = None  # the association breaks after this many stores
    received: list[str] = field(default_factory=list)  # SOP Instance UIDs stored, in order (repeats kept)


class _FakeSession:
    def __init__(self, destination: FakeDestination, lock: threading.Lock) -> None:
        self._destination = destination
        self._lock = lock
        self._sent = 0

    def send(self, path: Path) -> int:
        destination = self._destination
        if destination.fail_after is not None and self._sent >= destination.fail_after:
            raise SendError("the fake association broke")
        self._sent += 1
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        status = destination.statuses.get(uid, 0x0000)
        if status in (0x0000, 0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
            with self._lock:
                destination.received.append(uid)
        return status


class FakeSender:
    """Destinations by name, in memory; records what each received."""

    def __init__(self, destinations: dict[str, FakeDestination] | None = None) -> None:
        self.destinations = destinations or {}
        self.opened: list[tuple[str, tuple[str, ...]]] = []
        self._lock = threading.Lock()

    def open(
        self, name: str, destination: Destination, calling_ae_title: str, sop_classes: Sequence[str]
    ) -> contextlib.AbstractContextManager[Session]:
        fake = self.destinations.setdefault(name, FakeDestination())
        with self._lock:
            self.opened.append((name, tuple(sop_classes)))
        if not fake.reachable:
            raise SendError(f"destination {name}: cannot connect (fake: unreachable)")
        return contextlib.nullcontext(_FakeSession(fake, self._lock))
