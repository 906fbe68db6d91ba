"""The audit trail: an observer that turns the gateway's events into DICOM audit messages.

Attach it like any :class:`~gateway.events.GatewayObserver`::

    trail = AuditTrail.from_settings(settings)
    observers.add(trail)
    ...
    trail.close()

Instances are audited per association and study, when the association ends (one DICOM
Instances Transferred message per study with its SOP classes and counts), not per instance.
Writing never raises into the DICOM or pipeline path: a failed write is logged (without the
message) and counted in :attr:`AuditTrail.failures`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

from gateway.audit import messages as m
from gateway.audit.sinks import AuditFile, AuditSink, SyslogSender, SyslogTarget
from gateway.config.settings import Settings
from gateway.events import (
    AssociationInfo,
    ConfigurationChange,
    DeliveryInfo,
    GatewayObserver,
    QueryInfo,
    ReceivedInstance,
)

LOGGER = logging.getLogger(__name__)

#: Refusals that are the caller's (or our) fault and end the attempt: serious failure; the others are
#: transient (the caller tries again later): minor failure.
_SERIOUS_REJECTIONS = frozenset({"unknown_caller", "called_ae_title", "admission_error"})
#: EventOutcomeIndicator of a delivery attempt.
_DELIVERY_OUTCOMES = {"delivered": m.SUCCESS, "retry": m.MINOR_FAILURE, "dead": m.SERIOUS_FAILURE}
#: EventOutcomeIndicator of a query: refused by the source (serious), or no answer (minor: the puller retries).
_QUERY_OUTCOMES = {"answered": m.SUCCESS, "failed": m.MINOR_FAILURE, "refused": m.SERIOUS_FAILURE}


def _now() -> datetime:
    return datetime.now(UTC)


#: The detail of a connection closed before admission that sent nothing: not audited.
NO_REQUEST = "no association request"


class AuditTrail(GatewayObserver):
    """Writes a DICOM audit message for each audited event to every sink (the file, the syslog collector)."""

    def __init__(
        self,
        sinks: Sequence[AuditSink],
        *,
        ae_titles: Sequence[str],
        host_id: str,
        app_name: str = "gazex",
        enterprise_site_id: str | None = None,
        clock: Callable[[], datetime] = _now,
        enabled: bool = True,
    ) -> None:
        if not ae_titles:
            raise ValueError('Argument "ae_titles" must name at least one AE title')
        self.enabled = enabled
        self._sinks = list(sinks) if enabled else []
        self.ae_titles = tuple(ae_titles)
        self.host_id = host_id
        self.app_name = app_name
        self.source = m.AuditSource(f"{app_name}@{host_id}", enterprise_site_id)
        self._clock = clock
        self._lock = threading.Lock()
        self.written = 0
        self.failures = 0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        ae_title: str | None = None,
        host_id: str | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> AuditTrail:
        """The trail ``settings.audit`` describes; a disabled one writes nothing and opens nothing.

        ``ae_title`` is our main AE title (default: ``settings.dicom.ae_title``); ``host_id``
        names this machine in the messages and the syslog header (default: its FQDN).
        """
        titles = list(settings.dicom.ae_titles)
        if ae_title is not None:
            titles = [ae_title, *[title for title in titles if title != ae_title]]
        host = host_id or socket.getfqdn() or socket.gethostname()
        audit = settings.audit
        if not audit.enabled:
            return cls((), ae_titles=titles, host_id=host, app_name=audit.syslog.app_name, enabled=False)
        sinks: list[AuditSink] = [AuditFile(settings.audit_path)]
        syslog = audit.syslog
        if syslog.enabled and syslog.host:
            target = SyslogTarget(
                host=syslog.host,
                port=syslog.port,
                tls=syslog.tls,
                ca_certificates=syslog.ca_certificates,
                certificate=syslog.certificate,
                private_key=syslog.private_key,
            )
            sinks.append(SyslogSender(target, hostname=host, app_name=syslog.app_name))
        return cls(
            sinks,
            ae_titles=titles,
            host_id=host,
            app_name=audit.syslog.app_name,
            enterprise_site_id=audit.enterprise_site_id,
            clock=clock,
        )

    @property
    def sinks(self) -> tuple[AuditSink, ...]:
        return tuple(self._sinks)

    def close(self) -> None:
        """Close every sink (the syslog sender sends what it has queued first)."""
        sinks, self._sinks = self._sinks, []
        for sink in sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - closing one sink must not keep the others open
                LOGGER.error("audit: closing %s failed: %s", type(sink).__name__, type(exc).__name__)

    # participants

    def _us(
        self, ae_title: str | None = None, *, requestor: bool = False, roles: Iterable[m.Code] = ()
    ) -> m.Participant:
        """The gateway process: its process ID, its AE titles (the one in use first), our host."""
        titles = [ae_title] if ae_title else []
        titles += [title for title in self.ae_titles if title != ae_title]
        return m.Participant(
            user_id=str(os.getpid()),
            alternative_user_id="AETITLES=" + ";".join(titles),
            user_name=self.app_name,
            requestor=requestor,
            roles=tuple(roles),
            address=self.host_id,
        )

    @staticmethod
    def _node(
        ae_title: str, address: str | None, *, requestor: bool, roles: Iterable[m.Code] = (), name: str | None = None
    ) -> m.Participant:
        """A remote DICOM node, known by its AE title and address."""
        return m.Participant(
            user_id=ae_title or address or "unknown",
            alternative_user_id=f"AETITLES={ae_title}" if ae_title else None,
            user_name=name,
            requestor=requestor,
            roles=tuple(roles),
            address=address or None,
        )

    # writing

    def _emit(self, message: ET.Element, outcome: int) -> None:
        if not self._sinks:
            return
        data = m.encode(message)
        for sink in self._sinks:
            try:
                sink.write(data, outcome)
            except Exception as exc:  # noqa: BLE001 - the audit trail never breaks the DICOM path
                with self._lock:
                    self.failures += 1
                LOGGER.error("audit: writing to %s failed: %s", type(sink).__name__, type(exc).__name__)
            else:
                with self._lock:
                    self.written += 1

    # the events

    def application_activity(self, started: bool) -> None:
        if not self.enabled:
            return
        message = m.application_activity(
            started=started,
            application=self._us(roles=(m.ROLE_APPLICATION,)),
            source=self.source,
            when=self._clock(),
        )
        self._emit(message, m.SUCCESS)

    def association_accepted(self, association: AssociationInfo) -> None:
        if not self.enabled:
            return
        self._association(association, accepted=True, outcome=m.SUCCESS, description=None)

    def association_rejected(self, association: AssociationInfo, reason: str, detail: str) -> None:
        if not self.enabled or (reason == "pre_admission" and detail == NO_REQUEST):
            return  # a bare TCP connect (a port probe, a load balancer's check) is no node authentication
        outcome = m.SERIOUS_FAILURE if reason in _SERIOUS_REJECTIONS else m.MINOR_FAILURE
        description = f"association rejected: {reason}" + (f" ({detail})" if detail else "")
        self._association(association, accepted=False, outcome=outcome, description=description)

    def _association(
        self, association: AssociationInfo, *, accepted: bool, outcome: int, description: str | None
    ) -> None:
        message = m.node_authentication(
            accepted=accepted,
            caller=self._node(association.calling_ae_title, association.peer_address, requestor=True),
            reporter=self._us(association.called_ae_title),
            calling_ae_title=association.calling_ae_title,
            peer_address=association.peer_address,
            source=self.source,
            when=self._clock(),
            outcome=outcome,
            description=description,
        )
        self._emit(message, outcome)

    def association_ended(self, association: AssociationInfo, received: Sequence[ReceivedInstance]) -> None:
        if not self.enabled or not received:
            return
        by_study: dict[tuple[str, str], list[ReceivedInstance]] = {}
        for instance in received:
            by_study.setdefault((instance.study_instance_uid, instance.patient_id), []).append(instance)
        when = self._clock()
        for (study_uid, patient_id), instances in by_study.items():
            message = m.instances_transferred(
                action="C",
                outcome=m.SUCCESS,
                source_participant=self._node(
                    association.calling_ae_title, association.peer_address, requestor=True, roles=(m.ROLE_SOURCE,)
                ),
                destination_participant=self._us(association.called_ae_title, roles=(m.ROLE_DESTINATION,)),
                study_instance_uid=study_uid,
                sop_classes=m.count_sop_classes(instance.sop_class_uid for instance in instances),
                patient_id=patient_id,
                source=self.source,
                when=when,
            )
            self._emit(message, m.SUCCESS)

    def delivery_finished(self, delivery: DeliveryInfo, outcome: str) -> None:
        if not self.enabled:
            return
        indicator = _DELIVERY_OUTCOMES.get(outcome, m.MINOR_FAILURE)
        attempts = f", attempt {delivery.attempts}" if delivery.attempts else ""
        message = m.instances_transferred(
            action="R",
            outcome=indicator,
            source_participant=self._us(requestor=True, roles=(m.ROLE_SOURCE,)),
            destination_participant=self._node(
                delivery.called_ae_title,
                delivery.host,
                requestor=False,
                roles=(m.ROLE_DESTINATION,),
                name=delivery.destination,
            ),
            study_instance_uid=delivery.study_instance_uid,
            sop_classes=m.group_instances(delivery.sop_class_uids, delivery.sop_instance_uids),
            patient_id=delivery.patient_id,
            source=self.source,
            when=self._clock(),
            description=f"delivery {delivery.delivery_id} to {delivery.destination}{attempts}: {outcome}",
        )
        self._emit(message, indicator)

    def query_finished(self, query: QueryInfo, outcome: str, detail: str) -> None:
        if not self.enabled:
            return
        indicator = _QUERY_OUTCOMES.get(outcome, m.MINOR_FAILURE)
        if query.url:
            asked = m.url_query_object(query.url)
        else:
            asked = m.dimse_query_object(query.sop_class_uid, query.identifier, query.transfer_syntax_uid)
        message = m.query(
            outcome=indicator,
            requestor=self._us(query.calling_ae_title or None, requestor=True, roles=(m.ROLE_SOURCE,)),
            responder=self._node(
                query.called_ae_title, query.host, requestor=False, roles=(m.ROLE_DESTINATION,), name=query.source
            ),
            query_object=asked,
            source=self.source,
            when=self._clock(),
            description=f"query of source {query.source}: {outcome}" + (f" ({detail})" if detail else ""),
        )
        self._emit(message, indicator)

    def configuration_changed(self, change: ConfigurationChange) -> None:
        if not self.enabled:
            return
        message = m.software_configuration(
            actor=m.Participant(user_id=change.actor or "unknown", requestor=True, address=change.address or None),
            reporter=self._us(),
            revision=change.revision,
            summary=change.summary,
            before=change.before,
            after=change.after,
            source=self.source,
            when=self._clock(),
        )
        self._emit(message, m.SUCCESS)

    def user_login(self, username: str, address: str | None, success: bool, method: str) -> None:
        if not self.enabled:
            return
        self._authentication(username, address, login=True, success=success, method=method)

    def user_logout(self, username: str, address: str | None) -> None:
        if not self.enabled:
            return
        self._authentication(username, address, login=False, success=True, method=None)

    def _authentication(
        self, username: str, address: str | None, *, login: bool, success: bool, method: str | None
    ) -> None:
        description = None
        if method:
            description = f"{method} authentication {'succeeded' if success else 'failed'}"
        message = m.user_authentication(
            login=login,
            success=success,
            user=m.Participant(user_id=username or "(empty)", requestor=True, address=address or None),
            node=self._us(),
            source=self.source,
            when=self._clock(),
            description=description,
        )
        self._emit(message, m.SUCCESS if success else m.MINOR_FAILURE)
