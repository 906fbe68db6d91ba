"""A DICOMweb source: QIDO-RS to query, WADO-RS (multipart/related; type="application/dicom") to
retrieve, with the maintained ``dicomweb-client`` library over ``requests``.

Each instance retrieved is stored through the same :class:`~gateway.dicom.store.InstanceStore`
as a C-STORE (fsync, index), with the source's ``caller_name`` (default: its name) as the
calling AE that routing rules see.  The library's own retries are off: the puller retries with
its backoff, and records each failure on the study.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from gateway.config.sources import DicomwebSource, secret
from gateway.dicom.store import InstanceStore, StoreRequest, StoreStatus
from gateway.events import AssociationInfo, GatewayObserver, QueryInfo, ReceivedInstance
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

LOGGER = logging.getLogger(__name__)

#: DICOM JSON tags (PS3.18 F.2) read from QIDO-RS answers.
_STUDY_UID = "0020000D"
_STUDY_DATE = "00080020"
_MODALITIES = "00080061"
_SOP_CLASSES = "00080062"
_MODALITY = "00080060"
_BODY_PART = "00180015"


class _RecordingSession(requests.Session):
    """A session that remembers the URL of the last request it sent: a QIDO-RS query, as the audit trail records it."""

    last_url = ""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.last_url = request.url or ""
        return super().send(request, **kwargs)


class DicomwebPullSource:
    """A :class:`~gateway.pull.source.PullSource` over QIDO-RS and WADO-RS."""

    def __init__(
        self, name: str, source: DicomwebSource, *, store: InstanceStore | None, observer: GatewayObserver | None = None
    ) -> None:
        self.name = name
        self.source = source
        self.store = store
        self.observer = observer or GatewayObserver()
        self.caller_name = source.caller_name or name
        self.where = f"source {name} ({source.base_url})"

    def _client(self, session: requests.Session | None = None) -> DICOMwebClient:
        source = self.source
        session = session if session is not None else requests.Session()
        session.verify = str(source.ca_certificates) if source.ca_certificates is not None else source.verify_tls
        headers: dict[str, str] = {}
        try:
            if source.auth.type == "basic" and source.auth.password_file is not None:
                session.auth = (source.auth.username or "", secret(source.auth.password_file))
            elif source.auth.type == "bearer" and source.auth.token_file is not None:
                headers["Authorization"] = f"Bearer {secret(source.auth.token_file)}"
        except OSError as exc:
            raise SourceError(f"{self.where}: cannot read its credentials file: {exc.strerror or exc}") from None
        client = DICOMwebClient(
            url=source.base_url.rstrip("/"),
            session=session,
            headers=headers,
            timeout=(source.timeout_seconds, source.timeout_seconds),
        )
        client.set_http_retry_params(retry=False)  # the puller retries, with its backoff
        return client

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call; the library's and requests' exceptions become SourceError."""
        try:
            return function(*args, **kwargs)
        except requests.exceptions.HTTPError as exc:
            response = exc.response
            code = response.status_code if response is not None else "?"
            reason = response.reason if response is not None else ""
            refused = isinstance(code, int) and 400 <= code < 500  # a 5xx may pass: the puller retries
            failed = SourceRefused if refused else SourceError
            raise failed(f"{self.where}: {what} answered HTTP {code} {reason}".rstrip()) from None
        except requests.exceptions.Timeout:
            raise SourceError(
                f"{self.where}: {what} timed out: no answer within {self.source.timeout_seconds:g} s"
            ) from None
        except requests.exceptions.SSLError as exc:
            raise SourceError(
                f"{self.where}: {what}: TLS failed ({type(exc).__name__}); check ca_certificates"
            ) from None
        except requests.exceptions.ConnectionError:
            raise SourceError(f"{self.where}: {what}: cannot connect (refused or unreachable)") from None
        except requests.exceptions.RequestException as exc:
            raise SourceError(f"{self.where}: {what} failed: {type(exc).__name__}") from None
        except (ValueError, KeyError, TypeError) as exc:  # an answer the library cannot parse
            raise SourceError(
                f"{self.where}: {what}: the answer is not valid DICOMweb ({type(exc).__name__})"
            ) from None

    # -- find --------------------------------------------------------------------------------
    def _search(self, session: _RecordingSession, what: str, function: Any, **kwargs: Any) -> Any:
        """One QIDO-RS search through :meth:`_call`; each request sent is audited (a Query message), answered or not."""
        session.last_url = ""
        try:
            answers = self._call(what, function, **kwargs)
        except Exception as exc:
            self._query_finished(session.last_url, exc)
            raise
        self._query_finished(session.last_url, None)
        return answers

    def _query_finished(self, url: str, error: BaseException | None) -> None:
        if not url:  # nothing was sent
            return
        parts = urlsplit(url)
        sent = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))  # never a password in the URL
        info = QueryInfo(source=self.name, host=parts.hostname or "", url=sent)
        self.observer.query_finished(info, query_outcome(error), query_detail(error))

    def find(self, query: PullQuery, limit: int) -> list[StudyMatch]:
        session = _RecordingSession()
        client = self._client(session)
        found = FoundStudies(limit)
        for filters in study_filters(query):
            answers = self._search(
                session,
                "QIDO-RS /studies",
                client.search_for_studies,
                search_filters=filters,
                fields=["StudyDate", "ModalitiesInStudy", "SOPClassesInStudy"],
                limit=limit + 1,
            )
            for answer in answers:
                study = study_match(answer)
                if study_answer_fits(query, study):
                    found.add(study)
        studies = list(found.studies.values())
        if needs_series_check(query):
            studies = [study for study in studies if series_fit(query, self._series(session, client, study))]
        return studies

    def _series(self, session: _RecordingSession, client: DICOMwebClient, study: StudyMatch) -> list[SeriesMatch]:
        answers = self._search(
            session,
            "QIDO-RS /series",
            client.search_for_series,
            study_instance_uid=study.study_instance_uid,
            fields=["Modality", "BodyPartExamined"],
        )
        return [SeriesMatch(_first(answer, _MODALITY), _first(answer, _BODY_PART)) for answer in answers]

    # -- retrieve ------------------------------------------------------------------------------
    def retrieve(self, study: StudyMatch, progress: RetrieveProgress) -> Retrieved:
        if self.store is None:
            raise SourceError(f"{self.where}: WADO-RS needs the gateway's instance store")
        client = self._client()
        instances = self._call(
            "WADO-RS /studies/{uid}",
            client.iter_study,
            study.study_instance_uid,
            media_types=(("application/dicom", "*"),),  # as the archive holds them
        )
        info = AssociationInfo(self.caller_name, "", self.source.base_url)
        received: list[ReceivedInstance] = []
        try:
            stored, refused, last_refusal = self._store_all(iter(instances), info, received, progress)
        finally:
            if received:  # the audit trail's "instances received", as at the end of an association
                self.observer.association_ended(info, received)
        if refused:
            raise SourceError(
                f"{self.where}: {refused} instance(s) could not be stored here (last status 0x{last_refusal:04X}); "
                f"{stored} stored"
            )
        if stored == 0:
            raise SourceError(f"{self.where}: WADO-RS returned no instance of the study")
        return Retrieved(stored, f"{stored} instance(s)")

    def _store_all(
        self,
        iterator: Iterator[Dataset],
        info: AssociationInfo,
        received: list[ReceivedInstance],
        progress: RetrieveProgress,
    ) -> tuple[int, int, int]:
        """Each instance of the WADO-RS answer through the InstanceStore: (stored, refused, last refusal)."""
        assert self.store is not None  # retrieve() checked
        stored = refused = last_refusal = 0
        while True:
            if progress.stop.is_set():
                raise RetrieveInterrupted("WADO-RS stopped: the gateway is shutting down")
            dataset = self._call("WADO-RS /studies/{uid}", next, iterator, None)
            if dataset is None:
                break
            transfer_syntax, data = encoded(dataset)
            request = StoreRequest(
                sop_class_uid=str(dataset.get("SOPClassUID", "")),
                sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
                transfer_syntax_uid=transfer_syntax,
                calling_ae_title=self.caller_name,
                called_ae_title="",
                peer_address=None,
            )
            result = self.store.store_bytes(request, data)
            if result.status == StoreStatus.SUCCESS:
                stored += 1
                if result.instance is not None:
                    received.append(result.instance)
                    self.observer.instance_stored(info, result.instance)
            else:
                refused += 1
                last_refusal = int(result.status)
                self.observer.instance_refused(info, int(result.status))
                LOGGER.warning("refused an instance of a WADO-RS retrieve with 0x%04X: %s", last_refusal, result.reason)
            progress.beat()
        return stored, refused, last_refusal


def study_filters(query: PullQuery) -> list[dict[str, str]]:
    """The QIDO-RS /studies filters of a query: one request per modality."""
    base: dict[str, str] = {}
    if query.study_uid is not None:
        base["StudyInstanceUID"] = query.study_uid
    if query.accession is not None:
        base["AccessionNumber"] = query.accession
    if query.study_date:
        base["StudyDate"] = query.study_date
    if not query.modalities:
        return [base]
    return [{**base, "ModalitiesInStudy": modality} for modality in query.modalities]


def _values(answer: dict[str, Any], tag: str) -> tuple[str, ...]:
    element = answer.get(tag) or {}
    return tuple(str(value).strip() for value in element.get("Value", []) if value is not None and str(value).strip())


def _first(answer: dict[str, Any], tag: str) -> str:
    values = _values(answer, tag)
    return values[0] if values else ""


def study_match(answer: dict[str, Any]) -> StudyMatch:
    return StudyMatch(
        study_instance_uid=_first(answer, _STUDY_UID),
        study_date=_first(answer, _STUDY_DATE),
        modalities=tuple(value.upper() for value in _values(answer, _MODALITIES)),
        sop_classes=_values(answer, _SOP_CLASSES),
    )


def encoded(dataset: Dataset) -> tuple[str, bytes]:
    """The transfer syntax and the bytes of a data set retrieved by WADO-RS, without its File Meta."""
    meta = getattr(dataset, "file_meta", None)
    transfer_syntax = UID(str(getattr(meta, "TransferSyntaxUID", "") or ExplicitVRLittleEndian))
    buffer = DicomBytesIO()
    buffer.is_little_endian = transfer_syntax.is_little_endian
    buffer.is_implicit_VR = transfer_syntax.is_implicit_VR
    write_dataset(buffer, dataset)
    return str(transfer_syntax), buffer.getvalue()
