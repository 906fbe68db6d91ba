"""The C-STORE SCP: check, spool durably, index, and answer with an explicit status.

By the time the handler runs, :mod:`gateway.dicom.receive` has streamed the data set into a
temporary spool file and hashed it.  The handler only reads the header, decides, fsyncs,
renames and indexes; it never decodes pixels and never re-encodes anything.  The success
status goes out only after the file and its directory are fsynced and the index committed.
"""

from __future__ import annotations

import enum
import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydicom.uid import UID
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from gateway.db.index import Arrival, IndexOutcome, InstanceIndex, StoredCopy, is_same_copy
from gateway.dicom.header import InstanceHeader, MissingIdentifiersError, UnreadableDatasetError, read_header
from gateway.dicom.receive import SpooledData, file_header, spooled_data
from gateway.events import ReceivedInstance
from gateway.safelog import log_unexpected
from gateway.spool import IncomingFile, OutOfSpaceError, Spool, instance_relpath

LOGGER = logging.getLogger(__name__)


class StoreStatus(enum.IntEnum):
    """The C-STORE response statuses this SCP returns (PS3.4 Annex B.2.3)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700  # free disk below the reserve, disk full, database unavailable
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # SOP Class/Instance UID differ from the request
    CANNOT_UNDERSTAND = 0xC210  # the data set does not parse
    PROCESSING_FAILURE = 0xC211  # an unexpected failure inside the gateway
    MISSING_IDENTIFIERS = 0xC212  # no Study or Series Instance UID, so it cannot be filed
    # STOW-RS only (C-STORE refuses these at presentation context negotiation): PS3.18 Table 10.5.3-4
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


@dataclass(frozen=True)
class StoreRequest:
    """What the C-STORE-RQ and its association say about an instance."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    calling_ae_title: str
    called_ae_title: str
    peer_address: str | None
    #: the study the instance must belong to (a STOW-RS request to /studies/{uid}); None: any
    expected_study_instance_uid: str | None = None


@dataclass(frozen=True)
class StoreResult:
    status: StoreStatus
    outcome: IndexOutcome | None = None
    reason: str = ""
    #: what was stored (on success), for the observers; not part of the result's equality
    instance: ReceivedInstance | None = field(default=None, compare=False)


def identity_mismatch(header: InstanceHeader, request: StoreRequest) -> str | None:
    """Why the data set's SOP Class/Instance UID disagree with the request, or None when they agree."""
    problems = []
    if header.sop_class_uid != request.sop_class_uid.strip("\x00 "):
        problems.append(
            f"SOP Class UID {header.sop_class_uid or '(missing)'} differs from the request's {request.sop_class_uid}"
        )
    if header.sop_instance_uid != request.sop_instance_uid.strip("\x00 "):
        problems.append(
            f"SOP Instance UID {header.sop_instance_uid or '(missing)'} differs from the request's "
            f"{request.sop_instance_uid}"
        )
    return "; ".join(problems) or None


def received_instance(header: InstanceHeader, size: int) -> ReceivedInstance:
    """The observers' view of a stored instance."""
    return ReceivedInstance(
        study_instance_uid=header.study_instance_uid,
        sop_class_uid=header.sop_class_uid,
        sop_instance_uid=header.sop_instance_uid,
        size=size,
        patient_id=header.patient_id,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


class InstanceStore:
    """Turns a spooled data set into a durable, indexed instance and a status."""

    def __init__(self, spool: Spool, index: InstanceIndex, clock: Callable[[], datetime] = utc_now) -> None:
        self.spool = spool
        self.index = index
        self._clock = clock

    def store(self, request: StoreRequest, spooled: SpooledData) -> StoreResult:
        try:
            return self._store(request, spooled)
        finally:
            spooled.discard()  # removes the temporary file unless it was committed

    def store_bytes(self, request: StoreRequest, dataset: bytes) -> StoreResult:
        """Store a data set held in memory (a C-STORE that did not come through the spooling receiver)."""
        try:
            incoming = self.spool.begin(
                file_header(request.sop_class_uid, request.sop_instance_uid, request.transfer_syntax_uid)
            )
        except OutOfSpaceError as exc:
            return StoreResult(StoreStatus.OUT_OF_RESOURCES, reason=str(exc))
        incoming.write(dataset)
        return self.store(request, SpooledData(incoming=incoming))

    def _store(self, request: StoreRequest, spooled: SpooledData) -> StoreResult:
        received_at = self._clock()
        timing = _Timing(spooled)
        checked = self._check(request, spooled)
        timing.mark("header")
        if isinstance(checked, StoreResult):
            return checked
        header, incoming = checked
        copy = StoredCopy(
            file_path=str(
                instance_relpath(
                    header.study_instance_uid,
                    header.series_instance_uid,
                    header.sop_instance_uid,
                    incoming.content_sha256,
                )
            ),
            file_size=incoming.file_size,
            content_sha256=incoming.content_sha256,
        )
        try:
            known = self.index.find(header.sop_instance_uid)
        except SQLAlchemyError as exc:
            return self._database_failure(exc)
        if (
            known is not None
            and is_same_copy(known, copy, request.transfer_syntax_uid)
            and self.spool.path(known.file_path).is_file()
        ):
            return StoreResult(
                StoreStatus.SUCCESS,
                IndexOutcome.DUPLICATE,
                "identical copy already stored",
                received_instance(header, copy.file_size),
            )
        timing.mark("lookup")
        arrival = Arrival(
            calling_ae_title=request.calling_ae_title,
            called_ae_title=request.called_ae_title,
            peer_address=request.peer_address,
            received_at=received_at,
            transfer_syntax_uid=request.transfer_syntax_uid,
        )
        result = self._persist(header, incoming, copy, arrival, timing)
        timing.log(header.sop_instance_uid)
        return result

    def _check(self, request: StoreRequest, spooled: SpooledData) -> tuple[InstanceHeader, IncomingFile] | StoreResult:
        """The header of a completely received, well-formed data set that matches its request; or the refusal."""
        incoming = spooled.incoming
        if incoming is not None:
            incoming.complete()  # every fragment written and hashed
        if incoming is None or not incoming.ok:
            out_of_space = spooled.out_of_space if incoming is None else incoming.out_of_space
            reason = spooled.refusal if incoming is None else incoming.failure
            status = StoreStatus.OUT_OF_RESOURCES if out_of_space else StoreStatus.PROCESSING_FAILURE
            return StoreResult(status, reason=reason or "the data set was not received")
        try:
            header = read_header(incoming.path, incoming.header_size, UID(request.transfer_syntax_uid))
        except UnreadableDatasetError as exc:
            return StoreResult(StoreStatus.CANNOT_UNDERSTAND, reason=str(exc))
        except MissingIdentifiersError as exc:
            return StoreResult(StoreStatus.MISSING_IDENTIFIERS, reason=str(exc))
        mismatch = identity_mismatch(header, request)
        expected_study = request.expected_study_instance_uid
        if mismatch is None and expected_study is not None and header.study_instance_uid != expected_study:
            mismatch = f"Study Instance UID {header.study_instance_uid} is not the target study {expected_study}"
        if mismatch is not None:
            return StoreResult(StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, reason=mismatch)
        return header, incoming

    def _persist(
        self, header: InstanceHeader, incoming: IncomingFile, copy: StoredCopy, arrival: Arrival, timing: _Timing
    ) -> StoreResult:
        """fsync + rename + directory fsync, then the index; success only when all of it is done."""
        try:
            self.spool.commit(incoming, copy.file_path)
            timing.mark("fsync+rename")
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                return StoreResult(StoreStatus.OUT_OF_RESOURCES, reason=f"disk full: {exc.strerror}")
            return StoreResult(StoreStatus.PROCESSING_FAILURE, reason=f"spool write failed: {exc.strerror}")
        try:
            result = self.index.record(header, copy, arrival)
        except SQLAlchemyError as exc:
            # the file is in place but not indexed: the sender retries, the same bytes land on
            # the same path, and the index catches up
            return self._database_failure(exc)
        timing.mark("index")
        if result.previous_file_path is not None and result.previous_file_path != copy.file_path:
            try:
                self.spool.remove(result.previous_file_path)
            except OSError as exc:
                LOGGER.warning("could not delete the replaced copy %s: %s", result.previous_file_path, exc.strerror)
        return StoreResult(StoreStatus.SUCCESS, result.outcome, instance=received_instance(header, copy.file_size))

    @staticmethod
    def _database_failure(exc: SQLAlchemyError) -> StoreResult:
        # no message: it can quote the values (PHI) of the statement
        LOGGER.error("index database failure: %s", type(exc).__name__)
        if isinstance(exc, OperationalError):
            return StoreResult(StoreStatus.OUT_OF_RESOURCES, reason="the index database is unavailable")
        return StoreResult(StoreStatus.PROCESSING_FAILURE, reason="the index database refused the instance")


class _Timing:
    """Where a C-STORE's time went, logged at DEBUG: receive (first to last fragment), then each step."""

    def __init__(self, spooled: SpooledData) -> None:
        self._spooled = spooled
        self._last = time.perf_counter()
        self._steps: list[tuple[str, float]] = []

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self._steps.append((step, now - self._last))
        self._last = now

    def log(self, sop_instance_uid: str) -> None:
        if not LOGGER.isEnabledFor(logging.DEBUG):
            return
        spooled = self._spooled
        parts = []
        if spooled.completed is not None:
            parts.append(f"receive {(spooled.completed - spooled.started) * 1000:.1f}")
        parts += [f"{step} {seconds * 1000:.1f}" for step, seconds in self._steps]
        LOGGER.debug("%s timing (ms): %s", sop_instance_uid, ", ".join(parts))


def store_request_from_event(event: Any) -> StoreRequest:
    """The :class:`StoreRequest` of a pynetdicom ``EVT_C_STORE`` event."""
    request = event.request
    assoc = event.assoc
    requestor = assoc.requestor
    called = getattr(requestor.primitive, "called_ae_title", None) or assoc.acceptor.ae_title
    return StoreRequest(
        sop_class_uid=str(request.AffectedSOPClassUID or ""),
        sop_instance_uid=str(request.AffectedSOPInstanceUID or ""),
        transfer_syntax_uid=str(event.context.transfer_syntax),
        calling_ae_title=str(requestor.ae_title).strip(),
        called_ae_title=str(called).strip(),
        peer_address=str(requestor.address) if requestor.address else None,
    )


def handle_store(event: Any, store: InstanceStore, on_result: Callable[[Any, StoreResult], None] | None = None) -> int:
    """pynetdicom ``EVT_C_STORE`` handler: always returns a status, never raises.

    Bound with the :class:`InstanceStore` as an extra handler argument.  An unexpected
    exception becomes 0xC211 for this instance only; the association and the server go on.
    """
    result: StoreResult
    try:
        request = store_request_from_event(event)
        spooled = spooled_data(event.request)
        if spooled is not None:
            result = store.store(request, spooled)
        else:
            result = store.store_bytes(request, event.encoded_dataset(include_meta=False))
    except Exception as exc:  # noqa: BLE001 - the boundary the issue asks for: an answer, not a dead association
        log_unexpected(LOGGER, "storing an instance failed; answered 0xC211", exc)
        result = StoreResult(StoreStatus.PROCESSING_FAILURE, reason=f"unexpected {type(exc).__name__}")
    if on_result is not None:
        on_result(event, result)
    return int(result.status)
