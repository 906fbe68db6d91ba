"""Delivery: send a job's outputs to one destination, exactly once as the archive sees it.

Each delivery (one job, one destination) is claimed with a lease like a job, so one dead
archive never blocks another: every destination has its own deliveries, retried on their own
schedule.  Within an attempt, every output not yet acknowledged by that destination is sent
over one association; each success or warning is committed to the database before the next
output is sent, so an acknowledged output is never sent to that destination again.  An output
sent again (after a failure, or a kill -9 between the archive's response and our commit)
is the same file, with the same SOP Instance UID.

After an attempt: every output acknowledged -> ``delivered``; otherwise ``pending`` again
after an exponential backoff with jitter, or ``dead`` after ``delivery.max_attempts``
(``gazex deliveries retry`` brings a dead delivery back).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from gateway.config import Settings
from gateway.events import DeliveryInfo, GatewayObserver
from gateway.pipeline import states
from gateway.pipeline.backoff import Backoff
from gateway.pipeline.clock import Clock
from gateway.pipeline.leases import Claim, Heartbeat, claim, held
from gateway.pipeline.outbox import Outbox
from gateway.pipeline.sender import BatchSession, Sender, SendError
from gateway.pipeline.states import DeliveryStatus, ItemStatus
from gateway.pipeline.tables import DELIVERIES, DELIVERY_ITEMS, JOBS, OUTPUTS, PATIENTS, STUDIES
from gateway.pipeline.worker import worker_name
from gateway.safelog import log_unexpected

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryResult:
    delivery_id: int
    status: str
    acknowledged: int
    total: int
    reason: str | None = None


class Deliverer:
    """Claims due deliveries and sends them; run several (threads or processes) for several at once."""

    def __init__(
        self,
        db: Engine,
        settings: Settings,
        outbox: Outbox,
        sender: Sender,
        clock: Clock,
        name: str | None = None,
        uniform: Callable[[], float] = random.random,
        observer: GatewayObserver | None = None,
        live: Callable[[], Settings] | None = None,
    ) -> None:
        self._db = db
        self._observer = observer or GatewayObserver()
        self._settings = settings
        self._live = live or (lambda: settings)  # destinations and our AE title in force now
        self._outbox = outbox
        self._sender = sender
        self._clock = clock
        self.name = name or worker_name("delivery")
        self._backoff = Backoff.from_settings(settings.delivery)
        self._uniform = uniform
        self._retry_after: float | None = None  # asked for by the destination in the current attempt

    def run_once(self) -> DeliveryResult | None:
        """Claim and attempt one due delivery; None when none is due."""
        with self._db.begin() as connection:
            claimed = claim(
                connection,
                DELIVERIES,
                waiting=DeliveryStatus.PENDING,
                active=DeliveryStatus.SENDING,
                owner=self.name,
                now=self._clock.now(),
                lease_seconds=self._settings.delivery.lease_seconds,
                values={"updated_at": self._clock.now()},
            )
        if claimed is None:
            return None
        return self.attempt(claimed)

    def run(self, stop: threading.Event, wake: threading.Event | None = None, *, burst: bool = False) -> int:
        """Send until ``stop`` is set (burst mode: until nothing is due); returns how many attempts were made."""
        attempts = 0
        while not stop.is_set():
            try:
                result = self.run_once()
            except SQLAlchemyError as exc:
                LOGGER.error("sender %s: the database is unavailable (%s); retrying", self.name, type(exc).__name__)
                if burst:
                    raise
                result = None
            if result is not None:
                attempts += 1
                continue
            if burst:
                return attempts
            if wake is not None:
                wake.wait(self._settings.delivery.poll_seconds)
                wake.clear()
            else:
                stop.wait(self._settings.delivery.poll_seconds)
        return attempts

    # -- one attempt ------------------------------------------------------------------------
    def attempt(self, claimed: Claim) -> DeliveryResult:
        self._retry_after = None
        with self._db.connect() as connection:
            delivery = connection.execute(select(DELIVERIES).where(DELIVERIES.c.id == claimed.id)).one()
            items = connection.execute(
                select(
                    DELIVERY_ITEMS.c.id,
                    DELIVERY_ITEMS.c.status,
                    OUTPUTS.c.sop_instance_uid,
                    OUTPUTS.c.sop_class_uid,
                    OUTPUTS.c.file_path,
                    OUTPUTS.c.purged_at,
                )
                .join(OUTPUTS, OUTPUTS.c.id == DELIVERY_ITEMS.c.output_pk)
                .where(DELIVERY_ITEMS.c.delivery_pk == claimed.id)
                .order_by(DELIVERY_ITEMS.c.id)
            ).all()
            study = connection.execute(
                select(JOBS.c.study_instance_uid, PATIENTS.c.patient_id)
                .join(STUDIES, STUDIES.c.id == JOBS.c.study_pk)
                .join(PATIENTS, PATIENTS.c.id == STUDIES.c.patient_pk)
                .where(JOBS.c.id == delivery.job_pk)
            ).one()
        study_uid = study.study_instance_uid
        sent: list[tuple[str, str]] = []  # (SOP Instance UID, SOP Class UID) acknowledged in this attempt
        pending = [item for item in items if item.status != ItemStatus.ACKNOWLEDGED]
        live = self._live()
        destination = live.destinations.get(delivery.destination)
        if destination is None:
            reason = (
                f"destination {delivery.destination!r} is no longer configured "
                f"(configured: {', '.join(sorted(live.destinations)) or 'none'}); "
                "add it back and run gazex deliveries retry"
            )
            result = self._finish(claimed, delivery, len(items), len(items) - len(pending), reason, dead=True)
            self._notify(result, claimed, delivery, None, study.study_instance_uid, study.patient_id, sent)
            return result
        problem: str | None = None
        if pending:
            heartbeat = Heartbeat(
                self._db,
                DELIVERIES,
                claimed,
                DeliveryStatus.SENDING,
                self._clock,
                self._settings.delivery.lease_seconds,
                self._settings.delivery.heartbeat_seconds,
            )
            with heartbeat:
                try:
                    problem = self._send(delivery, destination, pending, sent, live.dicom.ae_title)
                except SQLAlchemyError:
                    raise  # the loop reports it; the lease expires and the delivery is claimed again
                except Exception as exc:  # noqa: BLE001 - a bug must not kill the sender: recorded, retried
                    log_unexpected(LOGGER, f"delivery {delivery.id}: sending failed", exc)
                    problem = f"unexpected {type(exc).__name__} in the gateway (see the log)"
        acknowledged = self._acknowledged(claimed.id)
        LOGGER.info(
            "delivery %d (job %d, study %s) to %s, attempt %d: %d of %d output(s) acknowledged%s",
            delivery.id,
            delivery.job_pk,
            study_uid,
            delivery.destination,
            claimed.attempts,
            acknowledged,
            len(items),
            f"; {problem}" if problem else "",
        )
        result = self._finish(claimed, delivery, len(items), acknowledged, problem)
        self._notify(result, claimed, delivery, destination, study.study_instance_uid, study.patient_id, sent)
        return result

    def _notify(
        self,
        result: DeliveryResult,
        claimed: Claim,
        delivery: Any,
        destination: Any,
        study_uid: str,
        patient_id: str,
        sent: list[tuple[str, str]],
    ) -> None:
        """Tell the observers how the attempt ended (nothing when the lease was lost: another sender owns it)."""
        outcome = {DeliveryStatus.DELIVERED: "delivered", DeliveryStatus.PENDING: "retry", DeliveryStatus.DEAD: "dead"}
        if result.status not in outcome:
            return
        info = DeliveryInfo(
            delivery_id=int(delivery.id),
            destination=delivery.destination,
            called_ae_title=getattr(destination, "ae_title", "") if destination is not None else "",
            host=destination.host if destination is not None else "",
            port=int(destination.port) if destination is not None else 0,
            study_instance_uid=study_uid,
            sop_instance_uids=tuple(uid for uid, _ in sent),
            sop_class_uids=tuple(sop_class for _, sop_class in sent),
            patient_id=patient_id or "",
            attempts=claimed.attempts,
        )
        self._observer.delivery_finished(info, outcome[DeliveryStatus(result.status)])

    def _send(
        self,
        delivery: Any,
        destination: Any,
        pending: list[Any],
        sent: list[tuple[str, str]] | None = None,
        our_ae_title: str | None = None,
    ) -> str | None:
        """Send what is not acknowledged yet, committing each acknowledgement at once; the problems, in words."""
        calling = getattr(destination, "calling_ae_title", None) or our_ae_title or self._live().dicom.ae_title
        problems: list[str] = []
        self._retry_after = None
        try:
            with self._sender.open(
                delivery.destination, destination, calling, [item.sop_class_uid for item in pending]
            ) as session:
                if isinstance(session, BatchSession):
                    self._send_batches(delivery, session, pending, sent, problems)
                    return "; ".join(problems) or None
                for item in pending:
                    if item.purged_at is not None:
                        problems.append(f"{item.sop_instance_uid}: its outbox file was removed by retention")
                        self._record_item(item.id, None, "removed by retention")
                        continue
                    path = self._outbox.path(item.file_path)
                    try:
                        status = session.send(path)
                    except FileNotFoundError:
                        problems.append(f"{item.sop_instance_uid}: its outbox file {item.file_path} is missing")
                        self._record_item(item.id, None, "outbox file missing")
                        continue
                    self._record_status(delivery, item, status, None, problems, sent)
        except SendError as exc:
            problems.append(str(exc))
            self._retry_after = exc.retry_after
        return "; ".join(problems) or None

    def _send_batches(
        self,
        delivery: Any,
        session: BatchSession,
        pending: list[Any],
        sent: list[tuple[str, str]] | None,
        problems: list[str],
    ) -> None:
        """Send in requests of ``session.batch_size`` outputs (STOW-RS), recording each output's own result."""
        ready = []
        for item in pending:
            if item.purged_at is not None:
                problems.append(f"{item.sop_instance_uid}: its outbox file was removed by retention")
                self._record_item(item.id, None, "removed by retention")
                continue
            path = self._outbox.path(item.file_path)
            if not path.is_file():
                problems.append(f"{item.sop_instance_uid}: its outbox file {item.file_path} is missing")
                self._record_item(item.id, None, "outbox file missing")
                continue
            ready.append((item, path))
        size = max(1, session.batch_size)
        for start in range(0, len(ready), size):
            chunk = ready[start : start + size]
            results = session.send_batch([(item.sop_instance_uid, path) for item, path in chunk])
            for (item, _), result in zip(chunk, results, strict=True):
                self._record_status(delivery, item, result.status, result.reason, problems, sent)

    def _record_status(
        self,
        delivery: Any,
        item: Any,
        status: int | None,
        reason: str | None,
        problems: list[str],
        sent: list[tuple[str, str]] | None,
    ) -> None:
        """Record what the destination answered for one output (a DICOM status, or None: it did not say)."""
        if status is None:
            problems.append(f"{item.sop_instance_uid}: {reason or 'no result'}")
            self._record_item(item.id, None, reason or "no result", sent_once=True)
            return
        outcome = states.store_outcome(status)
        failure = None if outcome is not states.StoreOutcome.FAILURE else (reason or "")
        self._record_item(item.id, status, failure)
        if outcome is not states.StoreOutcome.FAILURE and sent is not None:
            sent.append((item.sop_instance_uid, item.sop_class_uid))
        if outcome is states.StoreOutcome.WARNING:
            LOGGER.warning("%s stored %s with warning 0x%04X", delivery.destination, item.sop_instance_uid, status)
        elif outcome is states.StoreOutcome.FAILURE:
            problems.append(f"{item.sop_instance_uid} refused with status 0x{status:04X}")

    def _record_item(self, item_id: int, status: int | None, failure: str | None, *, sent_once: bool = False) -> None:
        """Commit one output's result now: an acknowledgement is durable before anything else is sent."""
        now = self._clock.now()
        sends = int(status is not None or sent_once)
        values: dict[str, Any] = {"status_code": status, "sends": DELIVERY_ITEMS.c.sends + sends}
        if status is not None and states.acknowledged(status):
            values.update(status=ItemStatus.ACKNOWLEDGED, acknowledged_at=now, last_error=None)
        else:
            values.update(
                status=ItemStatus.FAILED,
                last_error=failure or (f"status 0x{status:04X}" if status is not None else "not sent"),
            )
        with self._db.begin() as connection:
            connection.execute(
                update(DELIVERY_ITEMS)
                .where(and_(DELIVERY_ITEMS.c.id == item_id, DELIVERY_ITEMS.c.status != ItemStatus.ACKNOWLEDGED))
                .values(**values)
            )

    def _acknowledged(self, delivery_id: int) -> int:
        with self._db.connect() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(DELIVERY_ITEMS)
                    .where(
                        and_(
                            DELIVERY_ITEMS.c.delivery_pk == delivery_id,
                            DELIVERY_ITEMS.c.status == ItemStatus.ACKNOWLEDGED,
                        )
                    )
                ).scalar_one()
            )

    def _finish(
        self, claimed: Claim, delivery: Any, total: int, acknowledged: int, problem: str | None, *, dead: bool = False
    ) -> DeliveryResult:
        now = self._clock.now()
        settings = self._settings.delivery
        delay = self._backoff.delay(claimed.attempts, self._uniform)
        if self._retry_after is not None:  # the destination asked for a wait (HTTP Retry-After), within our limit
            delay = max(delay, min(self._retry_after, settings.max_delay_seconds))
        verdict = states.after_delivery_attempt(acknowledged == total, claimed.attempts, settings.max_attempts, delay)
        status = DeliveryStatus.DEAD if dead else verdict.status
        values: dict[str, Any] = {
            "status": status,
            "updated_at": now,
            "lease_token": None,
            "lease_expires_at": None,
            "last_error": problem,
        }
        if status == DeliveryStatus.DELIVERED:
            values["delivered_at"] = now
            values["last_error"] = None
        elif status == DeliveryStatus.PENDING:
            values["next_attempt_at"] = now + dt.timedelta(seconds=verdict.retry_in_seconds or 0.0)
        with self._db.begin() as connection:
            changed = connection.execute(
                update(DELIVERIES).where(held(DELIVERIES, claimed, DeliveryStatus.SENDING)).values(**values)
            )
        if changed.rowcount != 1:
            LOGGER.warning("delivery %d: lease lost to another sender; its acknowledgements are recorded", delivery.id)
            return DeliveryResult(delivery.id, "lease-lost", acknowledged, total, problem)
        if status == DeliveryStatus.DEAD:
            LOGGER.error(
                "delivery %d to %s DEAD after %d attempt(s): %s; retry with: gazex deliveries retry %d",
                delivery.id,
                delivery.destination,
                claimed.attempts,
                problem,
                delivery.id,
            )
        elif status == DeliveryStatus.PENDING:
            LOGGER.warning(
                "delivery %d to %s: attempt %d of %d failed, next in %.1f s",
                delivery.id,
                delivery.destination,
                claimed.attempts,
                settings.max_attempts,
                verdict.retry_in_seconds or 0.0,
            )
        return DeliveryResult(delivery.id, status, acknowledged, total, problem)


def retry_deliveries(db: Engine, clock: Clock, delivery_id: int | None = None, *, dead: bool = False) -> list[int]:
    """``gazex deliveries retry``: make a dead (or waiting) delivery due now, with its attempts reset.

    Acknowledged outputs stay acknowledged and are not sent again.
    """
    now = clock.now()
    if delivery_id is not None:
        condition = and_(
            DELIVERIES.c.id == delivery_id,
            DELIVERIES.c.status.in_([DeliveryStatus.DEAD, DeliveryStatus.PENDING]),
        )
    elif dead:
        condition = DELIVERIES.c.status == DeliveryStatus.DEAD
    else:
        raise ValueError("give a delivery id or dead=True")
    with db.begin() as connection:
        ids = [
            int(row[0])
            for row in connection.execute(
                update(DELIVERIES)
                .where(condition)
                .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, updated_at=now)
                .returning(DELIVERIES.c.id)
            ).all()
        ]
    return sorted(ids)
