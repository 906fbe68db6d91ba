"""What operators do, for the API and the console: C-ECHO a destination, retry a delivery,
reprocess a study, cancel a queued job, and test the routing rules.

Each action checks its target first and raises :class:`OperationError` (``not_found``,
``conflict`` or ``invalid``) without changing anything when it cannot be done; changes are
single conditional statements, so a race with a worker is refused, never half-done.  Each
action logs who did what, with ids and UIDs only (never patient data).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from sqlalchemy import Engine, and_, update

from gateway.config import Settings
from gateway.config.pipeline import DicomwebDestination
from gateway.dicom.echo import echo
from gateway.operations import queries
from gateway.operations.errors import OperationError
from gateway.pipeline.clock import Clock, SystemClock
from gateway.pipeline.completer import Completer, study_instances, study_pk_of
from gateway.pipeline.delivery import retry_deliveries
from gateway.pipeline.routing import InstanceFacts, explain_rules, facts_from_header, route_study
from gateway.pipeline.sender import SendError, tls_context
from gateway.pipeline.states import DeliveryStatus, JobStatus
from gateway.pipeline.stow import check_reachable
from gateway.pipeline.tables import JOBS

LOGGER = logging.getLogger(__name__)

#: The longest a C-ECHO test waits (each of connect, associate and the echo), unless asked otherwise.
ECHO_TIMEOUT_SECONDS = 10.0
#: How many instances of a study ``test_rules`` explains condition by condition.
EXPLAINED_INSTANCES = 10


# -- C-ECHO ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EchoOutcome:
    destination: str
    ae_title: str
    host: str
    port: int
    tls: bool
    calling_ae_title: str
    ok: bool
    message: str
    milliseconds: float
    status: int | None = None
    check: str = "C-ECHO"  # or "HTTP" for a DICOMweb destination (status: the HTTP status)


def echo_destination(settings: Settings, name: str, *, actor: str = "-", timeout: float | None = None) -> EchoOutcome:
    """C-ECHO a configured destination as deliveries reach it (its TLS, our calling AE title); a DICOMweb
    destination gets an HTTP reachability check instead (QIDO-RS GET studies?limit=1, with its authentication)."""
    destination = settings.destinations.get(name)
    if destination is None:
        configured = ", ".join(sorted(settings.destinations)) or "none"
        raise OperationError(f"there is no destination {name!r} (configured: {configured})", "not_found")
    if isinstance(destination, DicomwebDestination):
        return _check_dicomweb(name, destination, actor, timeout)
    calling = destination.calling_ae_title or settings.dicom.ae_title
    wait = timeout if timeout is not None else min(destination.timeout_seconds, ECHO_TIMEOUT_SECONDS)

    def outcome(ok: bool, message: str, seconds: float, status: int | None = None) -> EchoOutcome:
        return EchoOutcome(
            destination=name,
            ae_title=destination.ae_title,
            host=destination.host,
            port=destination.port,
            tls=destination.tls.enabled,
            calling_ae_title=calling,
            ok=ok,
            message=message,
            milliseconds=round(seconds * 1000, 1),
            status=status,
        )

    try:
        context = tls_context(destination)
    except SendError as exc:
        result = outcome(False, f"the destination's TLS settings cannot be used: {exc}", 0.0)
    else:
        found = echo(
            destination.host,
            destination.port,
            destination.ae_title,
            calling_ae_title=calling,
            timeout=wait,
            tls=context,
        )
        result = outcome(found.ok, found.message, found.seconds, found.status)
    LOGGER.info(
        "%s C-ECHOed destination %s (%s@%s:%d): %s", actor, name, destination.ae_title, destination.host,
        destination.port, result.message,
    )  # fmt: skip
    return result


def _check_dicomweb(name: str, destination: DicomwebDestination, actor: str, timeout: float | None) -> EchoOutcome:
    wait = timeout if timeout is not None else min(destination.timeout_seconds, ECHO_TIMEOUT_SECONDS)
    found = check_reachable(destination.model_copy(update={"timeout_seconds": wait}))
    result = EchoOutcome(
        destination=name,
        ae_title="",
        host=destination.host,
        port=destination.port,
        tls=destination.base_url.startswith("https://"),
        calling_ae_title="",
        ok=found.ok,
        message=found.message,
        milliseconds=round(found.seconds * 1000, 1),
        status=found.status,
        check="HTTP",
    )
    LOGGER.info("%s checked DICOMweb destination %s (%s): %s", actor, name, destination.base_url, result.message)
    return result


# -- deliveries and jobs --------------------------------------------------------------------


def retry_delivery(
    db: Engine, delivery_id: int, *, actor: str = "-", clock: Clock | None = None
) -> queries.DeliverySummary:
    """Make a dead (or failed and waiting) delivery due now with its attempts reset, as
    ``gazex deliveries retry``; outputs the destination acknowledged are not sent again."""
    found = queries.delivery(db, delivery_id)
    if found.status == DeliveryStatus.DELIVERED:
        raise OperationError(f"delivery {delivery_id} was delivered already; nothing to retry", "conflict")
    if found.status == DeliveryStatus.SENDING:
        raise OperationError(f"delivery {delivery_id} is being sent right now; wait for the attempt to end", "conflict")
    if not retry_deliveries(db, clock or SystemClock(), delivery_id):
        raise OperationError(f"delivery {delivery_id} changed meanwhile; look at it again", "conflict")
    LOGGER.info(
        "%s made delivery %d to %s due again (%d/%d already acknowledged)",
        actor,
        delivery_id,
        found.destination,
        found.acknowledged,
        found.total,
    )
    return queries.delivery(db, delivery_id)


def cancel_job(db: Engine, job_id: int, *, actor: str = "-", clock: Clock | None = None) -> queries.JobSummary:
    """Cancel a queued job: no worker claims it afterwards.  A running or finished job is refused."""
    found = queries.job(db, job_id)
    if found.status != JobStatus.QUEUED:
        raise OperationError(f"job {job_id} is {found.status}; only a queued job can be cancelled", "conflict")
    now = (clock or SystemClock()).now()
    with db.begin() as connection:
        changed = connection.execute(
            update(JOBS)
            .where(and_(JOBS.c.id == job_id, JOBS.c.status == JobStatus.QUEUED))
            .values(status=JobStatus.CANCELLED, finished_at=now, last_error=f"cancelled by {actor}")
        ).rowcount
    if changed != 1:
        current = queries.job(db, job_id).status
        raise OperationError(f"job {job_id} is {current} now; only a queued job can be cancelled", "conflict")
    LOGGER.info("%s cancelled job %d (study %s)", actor, job_id, found.study_instance_uid)
    return queries.job(db, job_id)


@dataclass(frozen=True)
class ReprocessOutcome:
    study_instance_uid: str
    job_id: int
    reason: str


def reprocess_study(
    db: Engine,
    settings: Settings,
    study_instance_uid: str,
    *,
    actor: str = "-",
    clock: Clock | None = None,
    on_job_queued: Callable[[], None] | None = None,
) -> ReprocessOutcome:
    """Route the study again with ``settings``' rules and queue a new job, as ``gazex reprocess``.

    A study the rules do not route is refused (``conflict``, with the reason); its state then
    records that reason, as the CLI's does.
    """
    study_pk = study_pk_of(db, study_instance_uid)
    if study_pk is None:
        raise OperationError(f"no study {study_instance_uid} was received", "not_found")
    completer = Completer(db, settings, clock or SystemClock(), on_job_queued=on_job_queued)
    result = completer.complete_study(study_pk, reprocess_nonce=uuid.uuid4().hex)
    if result is None or not result.decision.routed or result.job_id is None:
        reason = result.decision.reason if result is not None else "it could not be completed"
        raise OperationError(f"study {study_instance_uid} was not queued: {reason}", "conflict")
    if on_job_queued is not None:
        on_job_queued()
    LOGGER.info("%s reprocessed study %s: job %d queued", actor, study_instance_uid, result.job_id)
    return ReprocessOutcome(study_instance_uid, result.job_id, result.decision.reason)


# -- testing the routing rules --------------------------------------------------------------


@dataclass(frozen=True)
class RulesTest:
    """What the routing rules would do: with a received study, or with one uploaded instance."""

    source: str  # "study" | "file"
    study_instance_uid: str | None
    instances: int
    routed: bool
    rule: str | None
    reason: str
    destinations: list[str]
    outputs: list[str]
    analyze: list[str]  # SOP Instance UIDs analysed
    context: list[str]  # SOP Instance UIDs kept as context
    explanation: list[str]  # every rule and condition, for the (first) instances


def test_rules(
    settings: Settings,
    *,
    db: Engine | None = None,
    study_instance_uid: str | None = None,
    dataset: Dataset | None = None,
    calling_ae: str | None = None,
    called_ae: str | None = None,
) -> RulesTest:
    """Evaluate ``settings``' routing rules against a received study (``db`` and its UID) or a header.

    For an uploaded file, ``calling_ae`` is absent unless given and ``called_ae`` defaults to our
    main AE title, as ``gazex rules test``.  Nothing is changed.
    """
    if (study_instance_uid is None) == (dataset is None):
        raise OperationError("give either a study's Study Instance UID or a DICOM file, not both or neither", "invalid")
    facts: list[InstanceFacts]
    if dataset is not None:
        called = called_ae if called_ae is not None else settings.dicom.ae_title
        facts = [facts_from_header(dataset, calling_ae, called)]
        uid = str(dataset.get("StudyInstanceUID", "")) or None
        source = "file"
    else:
        assert study_instance_uid is not None
        if db is None:
            raise ValueError('Argument "db" is needed to test the rules against a study')
        study_pk = study_pk_of(db, study_instance_uid)
        if study_pk is None:
            raise OperationError(f"no study {study_instance_uid} was received", "not_found")
        with db.connect() as connection:
            facts = [row.facts for row in study_instances(connection, study_pk)]
        uid = study_instance_uid
        source = "study"
    decision = route_study(settings.routing.rules, facts, list(settings.destinations))
    explanation: list[str] = []
    for index, instance in enumerate(facts[:EXPLAINED_INSTANCES]):
        if len(facts) > 1:
            explanation.append(f"instance {index + 1} of {len(facts)}: {instance.sop_instance_uid}")
        explanation += explain_rules(settings.routing.rules, instance)
    return RulesTest(
        source=source,
        study_instance_uid=uid,
        instances=len(facts),
        routed=decision.routed,
        rule=decision.rule,
        reason=decision.reason,
        destinations=list(decision.destinations),
        outputs=list(decision.outputs),
        analyze=[f.sop_instance_uid for f in decision.analyze],
        context=[f.sop_instance_uid for f in decision.context],
        explanation=explanation,
    )
