"""What happens in the gateway, as calls on observers: the metrics and the audit trail listen.

The DICOM node and the pipeline call a :class:`GatewayObserver` at each event.  The base class
does nothing, so a component built without observers pays nothing.  :class:`Observers` fans one
call out to several observers; an observer that raises is logged (without the event's content)
and never disturbs the DICOM or pipeline path.

The event objects may carry a Patient ID because the audit trail must name the patient, and a
query (which may hold an accession number) because the audit trail must record it (DICOM PS3.15
A.5.3); observers must never log them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LOGGER = logging.getLogger(__name__)

#: Why an association was refused: the bounded label set of metrics and audit.
#: ``pre_admission``: a connection closed before an association was decided (no A-ASSOCIATE-RQ in time,
#: a failed TLS handshake, a protocol error, or over the limit of connections waiting for admission).
REJECTION_REASONS = (
    "unknown_caller",
    "called_ae_title",
    "capacity",
    "shutting_down",
    "admission_error",
    "pre_admission",
)


@dataclass(frozen=True)
class AssociationInfo:
    """Who called whom, from where."""

    calling_ae_title: str
    called_ae_title: str
    peer_address: str
    peer_port: int | None = None


@dataclass(frozen=True)
class ReceivedInstance:
    """One instance stored by C-STORE (or another intake)."""

    study_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    size: int
    patient_id: str = ""


@dataclass(frozen=True)
class DeliveryInfo:
    """One delivery of a job's outputs to one destination."""

    delivery_id: int
    destination: str
    called_ae_title: str
    host: str
    port: int
    study_instance_uid: str
    sop_instance_uids: tuple[str, ...] = ()
    sop_class_uids: tuple[str, ...] = ()
    patient_id: str = ""
    attempts: int = 0


#: How a query ended: ``answered``; ``refused`` (the source answered with a failure status, an HTTP 4xx, or
#: rejected the association); ``failed`` (no answer: unreachable, timed out, aborted, out of resources, HTTP 5xx).
QUERY_OUTCOMES = ("answered", "refused", "failed")


@dataclass(frozen=True)
class QueryInfo:
    """One query a pull sent to a source: a C-FIND identifier, or a QIDO-RS request.

    ``identifier`` is the C-FIND identifier as encoded in ``transfer_syntax_uid`` (it may hold an
    accession number: never log it); ``url`` the QIDO-RS request with its query string.
    """

    source: str
    host: str
    calling_ae_title: str = ""
    called_ae_title: str = ""
    sop_class_uid: str = ""
    identifier: bytes = b""
    transfer_syntax_uid: str = ""
    url: str = ""


@dataclass(frozen=True)
class ConfigurationChange:
    """A change of the live configuration: who, from where, what, before and after."""

    actor: str
    summary: str
    revision: int
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    address: str | None = None


class GatewayObserver:
    """The events; override what you need.  Calls must be quick and must not block on I/O."""

    def association_accepted(self, association: AssociationInfo) -> None:
        """An association was admitted."""

    def association_rejected(self, association: AssociationInfo, reason: str, detail: str) -> None:
        """An association was refused; ``reason`` is one of :data:`REJECTION_REASONS`."""

    def instance_stored(self, association: AssociationInfo | None, instance: ReceivedInstance) -> None:
        """An instance was fsynced and indexed (status 0x0000 or a warning)."""

    def instance_refused(self, association: AssociationInfo | None, status: int) -> None:
        """A C-STORE was answered with a failure status."""

    def association_ended(self, association: AssociationInfo, received: Sequence[ReceivedInstance]) -> None:
        """An admitted association was released or aborted; ``received``: what it stored."""

    def study_completed(self, study_instance_uid: str, instances: int) -> None:
        """A study was found complete and routed."""

    def job_finished(self, job_id: int, study_instance_uid: str, outcome: str, seconds: float | None) -> None:
        """A job attempt ended: ``outcome`` is ``done``, ``failed`` (will retry), ``dead``, ``superseded`` (a newer
        analysis of the study replaces it) or ``cancelled``; ``seconds``: the analysis time, when it ran."""

    def delivery_finished(self, delivery: DeliveryInfo, outcome: str) -> None:
        """A send attempt ended: ``outcome`` is ``delivered``, ``retry`` or ``dead``."""

    def query_finished(self, query: QueryInfo, outcome: str, detail: str) -> None:
        """A query to a pull source ended: ``outcome`` is one of :data:`QUERY_OUTCOMES`; ``detail``: why it
        did not succeed ('' when answered), in words that quote no patient data."""

    def configuration_changed(self, change: ConfigurationChange) -> None:
        """The live configuration changed."""

    def user_login(self, username: str, address: str | None, success: bool, method: str) -> None:
        """A console login or API token use was tried (``method``: ``password`` or ``token``)."""

    def user_logout(self, username: str, address: str | None) -> None:
        """A console session ended."""

    def application_activity(self, started: bool) -> None:
        """The gateway started (True) or stopped (False)."""


class Observers(GatewayObserver):
    """Several observers as one; an observer that raises is logged and skipped."""

    def __init__(self, observers: Iterable[GatewayObserver] = ()) -> None:
        self._observers = list(observers)

    def add(self, observer: GatewayObserver) -> None:
        self._observers.append(observer)

    def _each(self, name: str, *args: Any) -> None:
        for observer in self._observers:
            try:
                getattr(observer, name)(*args)
            except Exception as exc:  # noqa: BLE001 - an observer never breaks the DICOM path
                LOGGER.error("observer %s failed on %s: %s", type(observer).__name__, name, type(exc).__name__)

    def association_accepted(self, association: AssociationInfo) -> None:
        self._each("association_accepted", association)

    def association_rejected(self, association: AssociationInfo, reason: str, detail: str) -> None:
        self._each("association_rejected", association, reason, detail)

    def instance_stored(self, association: AssociationInfo | None, instance: ReceivedInstance) -> None:
        self._each("instance_stored", association, instance)

    def instance_refused(self, association: AssociationInfo | None, status: int) -> None:
        self._each("instance_refused", association, status)

    def association_ended(self, association: AssociationInfo, received: Sequence[ReceivedInstance]) -> None:
        self._each("association_ended", association, received)

    def study_completed(self, study_instance_uid: str, instances: int) -> None:
        self._each("study_completed", study_instance_uid, instances)

    def job_finished(self, job_id: int, study_instance_uid: str, outcome: str, seconds: float | None) -> None:
        self._each("job_finished", job_id, study_instance_uid, outcome, seconds)

    def delivery_finished(self, delivery: DeliveryInfo, outcome: str) -> None:
        self._each("delivery_finished", delivery, outcome)

    def query_finished(self, query: QueryInfo, outcome: str, detail: str) -> None:
        self._each("query_finished", query, outcome, detail)

    def configuration_changed(self, change: ConfigurationChange) -> None:
        self._each("configuration_changed", change)

    def user_login(self, username: str, address: str | None, success: bool, method: str) -> None:
        self._each("user_login", username, address, success, method)

    def user_logout(self, username: str, address: str | None) -> None:
        self._each("user_logout", username, address)

    def application_activity(self, started: bool) -> None:
        self._each("application_activity", started)
