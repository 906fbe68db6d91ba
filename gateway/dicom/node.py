"""The DICOM node: a Storage and Verification SCP with admission control and graceful shutdown."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.config.settings import DicomSettings
from gateway.dicom.admission import (
    SOURCE_SERVICE_PROVIDER_PRESENTATION,
    TRANSIENT,
    AssociationRequest,
    Rejection,
    Resolver,
    admission,
    resolve_host,
)
from gateway.dicom.receive import (
    PROTOCOL_LOG,
    GatewayAssociation,
    GatewayServer,
    PendingConnections,
    spooled_data,
)
from gateway.dicom.store import InstanceStore, StoreResult, StoreStatus, handle_store
from gateway.spool import Spool

LOGGER = logging.getLogger(__name__)

#: pynetdicom's own limit counts threads, including ones still winding down; ours is authoritative.
_PYNETDICOM_ASSOCIATION_CEILING = 10_000


class DicomNode:
    """Runs the SCP on the settings' address until :meth:`stop`.

    Admission (allowed callers, called AE title, maximum associations) is decided in
    ``EVT_REQUESTED`` with :func:`gateway.dicom.admission.admission`; C-STOREs go to
    :func:`gateway.dicom.store.handle_store` with the :class:`InstanceStore` as its argument.
    ``dicom_source`` gives the settings admission uses for each new association (our AE titles,
    allowed callers and their flags: the live configuration); by default, ``settings``.
    """

    def __init__(
        self,
        settings: DicomSettings,
        store: InstanceStore,
        *,
        ssl_context: ssl.SSLContext | None = None,
        resolve: Resolver = resolve_host,
        dicom_source: Callable[[], DicomSettings] | None = None,
    ) -> None:
        self.settings = settings
        self._dicom_source = dicom_source or (lambda: settings)
        self.store = store
        self.spool: Spool = store.spool
        self._ssl_context = ssl_context
        self._resolve = resolve
        self._lock = threading.Condition()
        self._associations: set[GatewayAssociation] = set()
        self._stores_in_flight = 0
        self._refusing_stores = False
        self._draining = False
        self._server: GatewayServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> tuple[str, int]:
        """Bind and start serving in a background thread; returns the bound (host, port)."""
        ae = self._application_entity()
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_STORE, gated_store_handler(self), [self.store, self._on_store_result]),
        ]
        server = cast(
            GatewayServer,
            ae.make_server(
                (self.settings.host, self.settings.port),
                ae_title=self.settings.ae_title,
                ssl_context=self._ssl_context,
                evt_handlers=handlers,
                server_class=GatewayServer,
                hooks=self,
                pending=self.pending_connections(),
            ),
        )
        ae._servers.append(server)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="dicom-accept")
        self._thread.daemon = True
        self._thread.start()
        host, port = server.server_address[:2]
        LOGGER.info(
            "DICOM node %s listening on %s:%d%s (max %d associations, max PDU %s, "
            "max %d connections waiting for admission, %d per address, for %g s)",
            "/".join(self.settings.ae_titles),
            host,
            port,
            " with TLS" if self._ssl_context else "",
            self.settings.max_associations,
            self.settings.max_pdu_size or "unlimited",
            server.pending.max_total,
            server.pending.max_per_address,
            server.pending.timeout,
        )
        return str(host), int(port)

    def pending_connections(self) -> PendingConnections:
        """The limits on connections not admitted yet: ``timeouts.admission`` (or ``timeouts.acse``, if shorter)."""
        settings = self.settings
        timeout = settings.timeouts.admission
        if settings.timeouts.acse is not None:
            timeout = min(timeout, settings.timeouts.acse)
        return PendingConnections(
            max_total=settings.max_pending_connections,
            max_per_address=settings.max_pending_per_address,
            timeout=timeout,
        )

    @property
    def pending_count(self) -> int:
        """Connections accepted but not admitted (or rejected) yet."""
        return self._server.pending.count if self._server is not None else 0

    def _application_entity(self) -> AE:
        settings = self.settings
        ae = AE(ae_title=settings.ae_title)
        ae.maximum_pdu_size = settings.max_pdu_size
        ae.acse_timeout = settings.timeouts.acse
        ae.dimse_timeout = settings.timeouts.dimse
        ae.network_timeout = settings.timeouts.network
        ae.maximum_associations = _PYNETDICOM_ASSOCIATION_CEILING
        ae.require_called_aet = False  # checked in admission, against every AE title of ours
        transfer_syntaxes = settings.transfer_syntax_uids()
        for sop_class in settings.sop_class_uids():
            ae.add_supported_context(sop_class, transfer_syntaxes)
        ae.add_supported_context(Verification, transfer_syntaxes)
        return ae

    def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: stop accepting, let open associations finish for ``grace`` seconds,
        then refuse new stores, wait for those in progress, and abort what is left."""
        if self._server is None or self._stopped.is_set():
            return
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        server = self._server
        with self._lock:
            self._draining = True
        server.shutdown()  # the accept loop ends and the listening socket closes
        LOGGER.info("stopped accepting associations; waiting up to %.0f s for %d open", grace, self.active_count)
        deadline = time.monotonic() + grace
        with self._lock:
            while self._associations and time.monotonic() < deadline:
                self._lock.wait(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
            self._refusing_stores = True
            while self._stores_in_flight:
                self._lock.wait(timeout=0.2)
            remaining = list(self._associations)
        for assoc in remaining:
            LOGGER.warning(
                "aborting the association from %s after the shutdown grace period; stores in progress were refused",
                assoc.requestor.ae_title,
            )
            assoc.abort()
        for assoc in remaining:
            assoc.join(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._stopped.set()
        PROTOCOL_LOG.flush()  # protocol errors counted but not logged yet
        LOGGER.info("DICOM node stopped")

    @property
    def active_count(self) -> int:
        with self._lock:
            return len(self._associations)

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the node is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    # -- hooks for gateway.dicom.receive ---------------------------------------------------
    def association_finished(self, assoc: Association) -> None:
        gateway_assoc = cast(GatewayAssociation, assoc)
        with self._lock:
            was_admitted = gateway_assoc in self._associations
            self._associations.discard(gateway_assoc)
            self._lock.notify_all()
        if was_admitted:
            stats = gateway_assoc.stats
            LOGGER.info(
                "association from %s@%s ended: %d stored, %d duplicate, %d replaced, %d refused",
                assoc.requestor.ae_title,
                assoc.requestor.address,
                stats["new"],
                stats["duplicate"],
                stats["replaced"],
                stats["refused"],
            )

    # -- event handlers --------------------------------------------------------------------
    def _on_requested(self, event: Any) -> None:
        """EVT_REQUESTED: admit the association or reject it (fails closed on any error)."""
        assoc = cast(GatewayAssociation, event.assoc)
        primitive = assoc.requestor.primitive
        assert primitive is not None  # EVT_REQUESTED follows the A-ASSOCIATE-RQ
        request = AssociationRequest(
            calling_ae_title=str(primitive.calling_ae_title).strip(),
            called_ae_title=str(primitive.called_ae_title).strip(),
            peer_address=str(assoc.requestor.address),
        )
        rejection: Rejection | None
        live = self.settings
        with self._lock:
            if self._draining:
                rejection = Rejection(
                    TRANSIENT, SOURCE_SERVICE_PROVIDER_PRESENTATION, 0x01, "the node is shutting down"
                )
            else:
                try:
                    live = self._dicom_source()  # the live configuration: read for each association
                    rejection = admission(
                        request,
                        ae_titles=live.ae_titles,
                        require_called_ae_title=live.require_called_ae_title,
                        allowed_callers=live.allowed_callers,
                        reject_unknown_callers=live.reject_unknown_callers,
                        active_associations=len(self._associations),
                        max_associations=self.settings.max_associations,
                        resolve=self._resolve,
                    )
                except Exception as exc:  # noqa: BLE001 - admission fails closed, never open
                    rejection = Rejection(
                        TRANSIENT, SOURCE_SERVICE_PROVIDER_PRESENTATION, 0x01, f"admission failed: {type(exc).__name__}"
                    )
            if rejection is None:
                self._associations.add(assoc)
        if rejection is not None:
            LOGGER.warning(
                "rejected (%s) the association from %r at %s to %r: %s",
                rejection.kind,
                request.calling_ae_title,
                request.peer_address,
                request.called_ae_title,
                rejection.reason,
            )
            assoc.acse.send_reject(rejection.result, rejection.source, rejection.diagnostic)
            assoc.is_rejected = True
            assoc.is_established = False
            assoc.kill()
            return
        if request.called_ae_title in live.ae_titles:
            assoc.acceptor.ae_title = request.called_ae_title  # answer as the title that was called
        LOGGER.info(
            "accepted the association from %r at %s to %r",
            request.calling_ae_title,
            request.peer_address,
            request.called_ae_title,
        )

    def _on_store_result(self, event: Any, result: StoreResult) -> None:
        request = event.request
        uid = str(request.AffectedSOPInstanceUID)
        stats: Counter[str] | None = getattr(event.assoc, "stats", None)
        if result.status == StoreStatus.SUCCESS and result.outcome is not None:
            if stats is not None:
                stats[result.outcome.value] += 1
            LOGGER.info("stored %s (%s)", uid, result.outcome.value)
            return
        if stats is not None:
            stats["refused"] += 1
        LOGGER.warning("refused %s with 0x%04X: %s", uid, int(result.status), result.reason)

    def store_gate(self) -> _StoreGate:
        return _StoreGate(self)


class _StoreGate:
    """Counts C-STOREs in progress so shutdown can wait for them; refuses new ones once draining."""

    def __init__(self, node: DicomNode) -> None:
        self._node = node
        self.admitted = False

    def __enter__(self) -> _StoreGate:
        node = self._node
        with node._lock:
            if not node._refusing_stores:
                node._stores_in_flight += 1
                self.admitted = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.admitted:
            node = self._node
            with node._lock:
                node._stores_in_flight -= 1
                node._lock.notify_all()


def gated_store_handler(node: DicomNode) -> Callable[..., int]:
    """The C-STORE handler wrapped in the node's shutdown gate."""

    def handler(event: Any, store: InstanceStore, on_result: Callable[[Any, StoreResult], None]) -> int:
        with node.store_gate() as gate:
            if not gate.admitted:
                spooled = spooled_data(event.request)
                if spooled is not None:
                    spooled.discard()
                on_result(event, StoreResult(StoreStatus.OUT_OF_RESOURCES, reason="the node is shutting down"))
                return int(StoreStatus.OUT_OF_RESOURCES)
            return handle_store(event, store, on_result)

    return handler
