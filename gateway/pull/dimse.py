"""A DICOM source: C-FIND (Study Root) to query, C-MOVE to our AE or C-GET to retrieve.

C-MOVE: the archive opens its own association to our Storage SCP (``gazex serve``) and
sends the study there, where it enters the pipeline as any pushed study does.  C-GET: the
archive sends the instances back on our association; each is stored through the same
:class:`~gateway.dicom.store.InstanceStore` the SCP uses (fsync, index), with the archive's AE
title as the calling AE, so routing rules that match ``calling_ae`` see the archive.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from gateway.config.sources import DicomSource
from gateway.dicom.contexts import STORAGE_SOP_CLASSES
from gateway.dicom.echo import _association_failure, preflight
from gateway.dicom.store import InstanceStore, StoreRequest, StoreStatus
from gateway.events import AssociationInfo, GatewayObserver, QueryInfo, ReceivedInstance
from gateway.pipeline.sender import SendError, dicom_tls_context
from gateway.pull.query import PullQuery, SeriesMatch, StudyMatch, needs_series_check, series_fit, study_answer_fits
from gateway.pull.source import (
    FoundStudies,
    Retrieved,
    RetrieveInterrupted,
    RetrieveProgress,
    SourceError,
    SourceRefused,
    query_detail,
    query_outcome,
)
from gateway.safelog import log_unexpected

LOGGER = logging.getLogger(__name__)

PENDING = (0xFF00, 0xFF01)
#: C-FIND "out of resources": the archive may answer later, not a refusal of the query.
OUT_OF_RESOURCES = 0xA700
#: C-MOVE / C-GET failure statuses in words (PS3.4 C.4.2.1.5, C.4.3.1.4).
_RETRIEVE_FAILURES = {
    0xA701: "out of resources: unable to calculate the number of matches",
    0xA702: "out of resources: unable to perform the sub-operations",
    0xA801: "the move destination is unknown to the archive",
    0xA900: "the identifier does not match the SOP class",
    0xFE00: "the retrieve was cancelled",
}
#: Transfer syntaxes offered for the instances a C-GET brings back: as stored, when we can.
GET_TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEG2000,
    JPEGLosslessSV1,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    RLELossless,
    DeflatedExplicitVRLittleEndian,
)
#: Storage SOP classes offered for a C-GET when the archive does not say which a study holds.
DEFAULT_GET_SOP_CLASSES = (
    "ComputedRadiographyImageStorage",
    "DigitalXRayImageStorageForPresentation",
    "DigitalXRayImageStorageForProcessing",
    "SecondaryCaptureImageStorage",
    "CTImageStorage",
    "MRImageStorage",
    "EnhancedSRStorage",
    "BasicTextSRStorage",
    "Comprehensive3DSRStorage",
    "ComprehensiveSRStorage",
    "GrayscaleSoftcopyPresentationStateStorage",
    "SegmentationStorage",
    "DigitalMammographyXRayImageStorageForPresentation",
    "UltrasoundImageStorage",
    "EncapsulatedPDFStorage",
)
_MAX_CONTEXTS = 127  # one presentation context stays for the C-GET itself


#: The Query/Retrieve SOP classes a pull uses as SCU, and what for (the Conformance Statement lists them).
QUERY_RETRIEVE_SOP_CLASSES: tuple[tuple[str, str], ...] = (
    (str(StudyRootQueryRetrieveInformationModelFind), "C-FIND: the studies (and series) a pull asks for"),
    (str(StudyRootQueryRetrieveInformationModelMove), "C-MOVE to our AE title (`retrieve: move`)"),
    (
        str(StudyRootQueryRetrieveInformationModelGet),
        "C-GET; its C-STORE sub-operations in the SCP role (`retrieve: get`)",
    ),
)


def failure_text(status: int, what: str, move_destination: str | None = None, comment: str = "") -> str:
    """A failure status of a retrieve, in words (with what to do, where there is something)."""
    text = _RETRIEVE_FAILURES.get(status)
    if status == 0xA801 and move_destination is not None:
        return (
            f"{what} refused with 0xA801: the archive does not know the move destination {move_destination!r}; "
            "add it to the archive's DICOM modalities with this gateway's host and dicom.port"
        )
    if text is None:
        text = "unable to process" if 0xC000 <= status <= 0xCFFF else "failed"
    if comment:
        text += f" ({comment})"
    if move_destination is not None:
        text += (
            f"; does the archive know the move destination {move_destination!r} (our AE title, host and "
            "dicom.port in its DICOM modalities)?"
        )
    return f"{what} refused with 0x{status:04X}: {text}"


class DimseSource:
    """A :class:`~gateway.pull.source.PullSource` over DICOM (pynetdicom as SCU)."""

    def __init__(
        self,
        name: str,
        source: DicomSource,
        *,
        calling_ae_title: str,
        move_destination_ae: str,
        store: InstanceStore | None = None,
        observer: GatewayObserver | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.calling_ae_title = source.calling_ae_title or calling_ae_title
        self.move_destination_ae = source.move_destination_ae or move_destination_ae
        self.store = store
        self.observer = observer or GatewayObserver()
        self.where = f"source {name} ({source.ae_title}@{source.host}:{source.port})"

    # -- associations ---------------------------------------------------------------------------
    def _tls(self) -> ssl.SSLContext | None:
        try:
            return dicom_tls_context(self.source.tls)
        except SendError as exc:
            raise SourceError(f"{self.where}: {exc}") from None

    @contextlib.contextmanager
    def _association(
        self,
        ae: AE,
        *,
        ext_neg: list[Any] | None = None,
        handlers: list[Any] | None = None,
        query: Dataset | None = None,
    ) -> Iterator[Association]:
        """An association with the source; ``query``: the C-FIND identifier it is for, audited when none comes."""
        source = self.source
        timeout = source.timeout_seconds
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
        tls = self._tls()
        started = time.monotonic()
        assoc = ae.associate(
            source.host,
            source.port,
            ae_title=source.ae_title,
            tls_args=(tls, source.host) if tls is not None else None,
            ext_neg=ext_neg,
            evt_handlers=handlers,
        )
        failure = _association_failure(assoc, waited=time.monotonic() - started, timeout=timeout)
        if failure is not None:
            if not assoc.is_rejected:
                failure = preflight(source.host, source.port, timeout=timeout, tls=tls) or failure
            ae.shutdown()
            rejected = assoc.is_rejected and getattr(assoc.acceptor.primitive, "result", None) == 1
            error = (SourceRefused if rejected else SourceError)(f"{self.where}: {failure}")
            if query is not None:  # the query could not be sent: audited as a query that failed
                self._query_finished(query, ImplicitVRLittleEndian, error)
            raise error
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()

    def _find_ae(self) -> AE:
        ae = AE(ae_title=self.calling_ae_title)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        return ae

    def _c_find(self, assoc: Association, identifier: Dataset) -> list[Dataset]:
        """The answers of one C-FIND; each is audited (a Query message), answered or not."""
        syntax = _find_transfer_syntax(assoc)
        try:
            answers = self._find_answers(assoc, identifier)
        except Exception as exc:
            self._query_finished(identifier, syntax, exc)
            raise
        self._query_finished(identifier, syntax, None)
        return answers

    def _query_finished(self, identifier: Dataset, syntax: UID, error: BaseException | None) -> None:
        """Tell the observers (the audit trail) that a C-FIND ended, with its identifier as encoded."""
        data = encode(identifier, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated) or b""
        info = QueryInfo(
            source=self.name,
            host=self.source.host,
            calling_ae_title=self.calling_ae_title,
            called_ae_title=self.source.ae_title,
            sop_class_uid=str(StudyRootQueryRetrieveInformationModelFind),
            identifier=data,
            transfer_syntax_uid=str(syntax),
        )
        self.observer.query_finished(info, query_outcome(error), query_detail(error))

    def _find_answers(self, assoc: Association, identifier: Dataset) -> list[Dataset]:
        answers: list[Dataset] = []
        for status, found in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
            if status is None or "Status" not in status:
                raise SourceError(
                    f"{self.where}: no C-FIND response within {self.source.timeout_seconds:g} s "
                    "(timed out, or the association was aborted)"
                )
            code = int(status.Status)
            if code in PENDING:
                if found is not None:
                    answers.append(found)
                continue
            if code != 0x0000:
                failed = SourceError if code == OUT_OF_RESOURCES else SourceRefused
                raise failed(f"{self.where}: C-FIND refused with 0x{code:04X}")
        return answers

    # -- find --------------------------------------------------------------------------------
    def find(self, query: PullQuery, limit: int) -> list[StudyMatch]:
        found = FoundStudies(limit)
        identifiers = study_identifiers(query)
        with self._association(self._find_ae(), query=identifiers[0]) as assoc:
            for identifier in identifiers:
                for answer in self._c_find(assoc, identifier):
                    study = study_match(answer)
                    if study_answer_fits(query, study):
                        found.add(study)
            studies = list(found.studies.values())
            if needs_series_check(query):
                studies = [study for study in studies if series_fit(query, self._series(assoc, study))]
        return studies

    def _series(self, assoc: Association, study: StudyMatch) -> list[SeriesMatch]:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study.study_instance_uid
        identifier.SeriesInstanceUID = ""
        identifier.Modality = ""
        identifier.BodyPartExamined = ""
        return [
            SeriesMatch(str(answer.get("Modality", "") or ""), str(answer.get("BodyPartExamined", "") or ""))
            for answer in self._c_find(assoc, identifier)
        ]

    def _sop_classes(self, study: StudyMatch) -> tuple[str, ...]:
        if study.sop_classes:
            return study.sop_classes
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = study.study_instance_uid
        identifier.SOPClassesInStudy = ""
        with self._association(self._find_ae(), query=identifier) as assoc:
            for answer in self._c_find(assoc, identifier):
                classes = study_match(answer).sop_classes
                if classes:
                    return classes
        return ()

    # -- retrieve ------------------------------------------------------------------------------
    def retrieve(self, study: StudyMatch, progress: RetrieveProgress) -> Retrieved:
        if self.source.retrieve == "get":
            return self._get(study, progress)
        return self._move(study, progress)

    def _move(self, study: StudyMatch, progress: RetrieveProgress) -> Retrieved:
        ae = AE(ae_title=self.calling_ae_title)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        with self._association(ae) as assoc:
            responses = assoc.send_c_move(
                retrieve_identifier(study), self.move_destination_ae, StudyRootQueryRetrieveInformationModelMove
            )
            return self._final(assoc, responses, "C-MOVE", progress, move_destination=self.move_destination_ae)

    def _get(self, study: StudyMatch, progress: RetrieveProgress) -> Retrieved:
        if self.store is None:
            raise SourceError(f"{self.where}: C-GET needs the gateway's instance store (run it in gazex serve)")
        classes = [uid for uid in self._sop_classes(study) if uid] or [
            str(STORAGE_SOP_CLASSES[keyword]) for keyword in DEFAULT_GET_SOP_CLASSES
        ]
        classes = list(dict.fromkeys(classes))[:_MAX_CONTEXTS]
        ae = AE(ae_title=self.calling_ae_title)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for sop_class in classes:
            ae.add_requested_context(sop_class, list(GET_TRANSFER_SYNTAXES))
        roles = [build_role(sop_class, scp_role=True) for sop_class in classes]
        receiver = _GetReceiver(self, progress)
        try:
            with self._association(ae, ext_neg=roles, handlers=[(evt.EVT_C_STORE, receiver.handle)]) as assoc:
                responses = assoc.send_c_get(retrieve_identifier(study), StudyRootQueryRetrieveInformationModelGet)
                result = self._final(assoc, responses, "C-GET", progress)
        finally:
            if receiver.received:  # the audit trail's "instances received", as at the end of an association
                self.observer.association_ended(receiver.info, receiver.received)
        if receiver.refused:
            raise SourceError(
                f"{self.where}: {receiver.refused} instance(s) of the C-GET could not be stored here "
                f"(last status 0x{receiver.last_refusal:04X}); {receiver.stored} stored"
            )
        return Retrieved(receiver.stored, result.detail)

    def _final(
        self,
        assoc: Association,
        responses: Any,
        what: str,
        progress: RetrieveProgress,
        *,
        move_destination: str | None = None,
    ) -> Retrieved:
        """Follow the pending responses to the final one; Retrieved on success, else SourceError."""
        done = threading.Event()
        watcher = threading.Thread(target=_abort_on_stop, args=(assoc, progress.stop, done), daemon=True)
        watcher.start()
        try:
            for status, _identifier in responses:
                if progress.stop.is_set():
                    raise RetrieveInterrupted(f"{what} stopped: the gateway is shutting down")
                if status is None or "Status" not in status:
                    raise SourceError(
                        f"{self.where}: no {what} response within {self.source.timeout_seconds:g} s "
                        "(timed out, or the association was aborted)"
                    )
                progress.beat()
                code = int(status.Status)
                if code in PENDING:
                    continue
                completed = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
                failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
                warned = int(status.get("NumberOfWarningSuboperations", 0) or 0)
                if code == 0x0000 and failed == 0:
                    return Retrieved(completed + warned, f"{completed + warned} instance(s)")
                if code == 0xB000 or (code == 0x0000 and failed):
                    hint = " (does our dicom.allowed_callers admit the archive's AE title?)" if what == "C-MOVE" else ""
                    raise SourceError(
                        f"{self.where}: {what} finished with {failed} failed sub-operation(s) of "
                        f"{completed + warned + failed} (0x{code:04X}); the study is retrieved again{hint}"
                    )
                comment = str(status.get("ErrorComment", "") or "").strip()[:200]
                raise SourceError(f"{self.where}: {failure_text(code, what, move_destination, comment)}")
        finally:
            done.set()
        if progress.stop.is_set():
            raise RetrieveInterrupted(f"{what} stopped: the gateway is shutting down")
        raise SourceError(f"{self.where}: the {what} ended without a final response")


def _find_transfer_syntax(assoc: Association) -> UID:
    """The transfer syntax the C-FIND identifiers are encoded in on this association (as pynetdicom does)."""
    for context in assoc.accepted_contexts:
        if context.abstract_syntax == StudyRootQueryRetrieveInformationModelFind and context.transfer_syntax:
            return UID(context.transfer_syntax[0])
    return ImplicitVRLittleEndian


def _abort_on_stop(assoc: Association, stop: threading.Event, done: threading.Event) -> None:
    while not done.is_set():
        if stop.wait(0.2):
            if not done.is_set() and assoc.is_established:
                assoc.abort()
            return


class _GetReceiver:
    """The C-STORE sub-operations of a C-GET: each instance through the InstanceStore."""

    def __init__(self, source: DimseSource, progress: RetrieveProgress) -> None:
        self.source = source
        self.progress = progress
        self.stored = 0
        self.refused = 0
        self.last_refusal = 0
        self.info = AssociationInfo(source.source.ae_title, source.calling_ae_title, source.source.host)
        self.received: list[ReceivedInstance] = []

    def handle(self, event: Any) -> int:
        source = self.source
        assert source.store is not None
        try:
            request = StoreRequest(
                sop_class_uid=str(event.request.AffectedSOPClassUID or ""),
                sop_instance_uid=str(event.request.AffectedSOPInstanceUID or ""),
                transfer_syntax_uid=str(event.context.transfer_syntax),
                calling_ae_title=source.source.ae_title,
                called_ae_title=source.calling_ae_title,
                peer_address=source.source.host,
            )
            result = source.store.store_bytes(request, event.encoded_dataset(include_meta=False))
        except Exception as exc:  # noqa: BLE001 - a status for this instance, not a dead association
            log_unexpected(LOGGER, "storing an instance of a C-GET failed; answered 0xC211", exc)
            self.refused += 1
            self.last_refusal = int(StoreStatus.PROCESSING_FAILURE)
            return self.last_refusal
        info = self.info
        if result.status == StoreStatus.SUCCESS:
            self.stored += 1
            if result.instance is not None:
                self.received.append(result.instance)
                source.observer.instance_stored(info, result.instance)
        else:
            self.refused += 1
            self.last_refusal = int(result.status)
            source.observer.instance_refused(info, int(result.status))
            LOGGER.warning("refused an instance of a C-GET with 0x%04X: %s", int(result.status), result.reason)
        self.progress.beat()
        return int(result.status)


def study_identifiers(query: PullQuery) -> list[Dataset]:
    """The study-level C-FIND identifiers of a query: one per modality (archives differ on lists)."""
    identifiers = []
    for modality in query.modalities or [""]:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = query.study_uid or ""
        identifier.AccessionNumber = query.accession or ""
        identifier.StudyDate = query.study_date
        identifier.ModalitiesInStudy = modality
        identifier.SOPClassesInStudy = ""
        identifiers.append(identifier)
    return identifiers


def study_match(answer: Dataset) -> StudyMatch:
    def values(keyword: str) -> tuple[str, ...]:
        value = answer.get(keyword)
        if value is None or value == "":
            return ()
        items = [value] if isinstance(value, str) else list(value)
        return tuple(str(item).strip() for item in items if str(item).strip())

    return StudyMatch(
        study_instance_uid=str(answer.get("StudyInstanceUID", "") or "").strip(),
        study_date=str(answer.get("StudyDate", "") or "").strip(),
        modalities=tuple(item.upper() for item in values("ModalitiesInStudy")),
        sop_classes=values("SOPClassesInStudy"),
    )


def retrieve_identifier(study: StudyMatch) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study.study_instance_uid
    return identifier
