"""The running gateway, assembled from settings: database, spool, DICOM node and the pipeline
(study completion, routing, jobs, worker, delivery, retention).

Everything is built here from one :class:`~gateway.config.Settings` and passed down; nothing
is opened at import time.
"""

from __future__ import annotations

import logging
from types import TracebackType

from sqlalchemy import Engine

from gateway.audit import AuditTrail
from gateway.config import Settings
from gateway.config.live import LiveSettings
from gateway.db import DatabaseError, create_database_engine, describe, require_current, schema_status, upgrade
from gateway.db.index import InstanceIndex
from gateway.dicom.node import DicomNode
from gateway.dicom.store import InstanceStore
from gateway.dicom.tls import server_context
from gateway.events import Observers
from gateway.metrics import GatewayMetrics
from gateway.pipeline.clock import Clock
from gateway.pipeline.model import ModelHolder
from gateway.pipeline.sender import Sender
from gateway.pipeline.service import Pipeline
from gateway.pull import Puller
from gateway.spool import Spool

LOGGER = logging.getLogger(__name__)


class GatewayRuntime:
    """Open with :meth:`open`, run with :meth:`start`, end with :meth:`stop` and :meth:`close`."""

    def __init__(
        self,
        settings: Settings,
        *,
        pipeline: bool = True,
        clock: Clock | None = None,
        sender: Sender | None = None,
        model: ModelHolder | None = None,
        observers: Observers | None = None,
    ) -> None:
        self.settings = settings
        #: the node's and the pipeline's events go here; add observers (metrics, audit) before :meth:`open`
        self.observers = observers if observers is not None else Observers()
        self.engine: Engine | None = None
        self.spool: Spool | None = None
        self.node: DicomNode | None = None
        self.pipeline: Pipeline | None = None
        #: the Prometheus metrics (one of :attr:`observers`), made by :meth:`open`; serve with gateway.metrics.render
        self.metrics: GatewayMetrics | None = None
        #: the audit trail (one of :attr:`observers`), made by :meth:`open`
        self.audit: AuditTrail | None = None
        #: the live configuration (AE titles, callers, destinations, routing), made by :meth:`open`
        self.live: LiveSettings | None = None
        #: runs queued pulls (gazex pull, POST /api/v1/pulls) when sources are configured, made by :meth:`open`
        self.puller: Puller | None = None
        self._with_pipeline = pipeline
        self._clock = clock
        self._sender = sender
        self._model = model
        self._started = False

    def open(self) -> None:
        """Prepare the database schema, the live configuration and the spool.

        Raises DatabaseError, SpoolError, TLSConfigError, or ConfigRejected (the database's live
        configuration does not validate).
        """
        settings = self.settings
        engine = create_database_engine(settings.database_url)
        self.engine = engine
        logging.getLogger("alembic").setLevel(logging.WARNING)  # our own line says what was migrated
        if settings.database.upgrade_on_start:
            before = _revision(engine)
            status = upgrade(engine)
            if before != status.current:
                LOGGER.info(
                    "database %s migrated from %s to %s",
                    describe(settings.database_url),
                    before or "empty",
                    status.head,
                )
        else:
            require_current(engine)
        live = LiveSettings(engine, settings, observers=self.observers)
        live.seed()
        self.live = live
        spool = Spool(
            settings.storage.spool_path, int(settings.storage.min_free_disk), node_id=settings.storage.node_id
        )
        spool.open()
        self.spool = spool
        ssl_context = server_context(settings.dicom.tls) if settings.dicom.tls.enabled else None
        store = InstanceStore(spool, InstanceIndex(engine))
        self.node = DicomNode(
            settings.dicom, store, ssl_context=ssl_context, observer=self.observers, dicom_source=live.dicom
        )
        if self._with_pipeline:
            self.pipeline = Pipeline(
                engine,
                settings,
                clock=self._clock,
                sender=self._sender,
                model=self._model,
                observer=self.observers,
                live=live.current,
            )
        if self._with_pipeline and settings.pull.enabled and settings.sources:
            self.puller = Puller(engine, settings, store=store, clock=self._clock, observer=self.observers)
        pipeline = self.pipeline
        self.metrics = GatewayMetrics(
            engine=engine,
            spool_path=settings.storage.spool_path,
            outbox_path=settings.storage.outbox_path,
            model_loaded=(lambda: pipeline.model.loaded) if pipeline is not None else None,
        )
        self.observers.add(self.metrics)
        self.audit = open_audit_trail(settings)
        self.observers.add(self.audit)

    def start(self) -> tuple[str, int]:
        if self.node is None:
            raise RuntimeError("open() the runtime before start()")
        address = self.node.start()
        if self.pipeline is not None:
            self.pipeline.start()
        if self.puller is not None:
            self.puller.start()
        self._started = True
        self.observers.application_activity(True)
        return address

    def stop(self, grace: float | None = None) -> list[str]:
        """Stop receiving, then the pipeline; returns the names of the pipeline threads abandoned."""
        abandoned: list[str] = []
        wait = self.settings.dicom.shutdown_grace_seconds if grace is None else grace
        if self.puller is not None:  # first: a retrieve in progress is aborted and its study handed back
            abandoned += self.puller.stop(timeout=wait)
        if self.node is not None:
            self.node.stop(grace)
        if self.pipeline is not None:
            abandoned += self.pipeline.stop(timeout=wait)
        if self._started:
            self._started = False
            self.observers.application_activity(False)
        return abandoned

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
            self.audit = None
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    def __enter__(self) -> GatewayRuntime:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop(grace=0)
        self.close()


class AuditUnavailableError(Exception):
    """The audit file cannot be opened: says where and what to do."""


def open_audit_trail(settings: Settings) -> AuditTrail:
    """The audit trail of ``settings.audit``; AuditUnavailableError when its file cannot be opened."""
    try:
        return AuditTrail.from_settings(settings)
    except OSError as exc:
        raise AuditUnavailableError(
            f"the audit file {settings.audit_path} cannot be opened ({exc.strerror or exc}); "
            "check its directory's owner, or set audit.path"
        ) from None


def _revision(engine: Engine) -> str | None:
    try:
        return schema_status(engine).current
    except DatabaseError:
        return None
