"""Study completion: find pending studies, decide which are complete, route them, queue their jobs.

Everything lives in the database (``studies.last_received_at`` written by the C-STORE
handler, ``study_states`` written here), so completion survives restarts and several
``gazex serve`` may run it against one PostgreSQL database: each study is completed inside a
transaction that holds its ``study_states`` row locked, and the job's unique idempotency key
stops a second job for the same instance set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gateway.config import Settings
from gateway.pipeline import completion, keys
from gateway.pipeline.clock import Clock
from gateway.pipeline.routing import InstanceFacts, RoutingDecision, route_study
from gateway.pipeline.states import JobStatus
from gateway.pipeline.tables import INSTANCES, JOB_INSTANCES, JOBS, SERIES, STATES, STUDIES

LOGGER = logging.getLogger(__name__)

#: Studies completed this recently have their instance set compared again (see completion.is_pending).
RECHECK_SECONDS = 60.0
#: Between full scans, only studies that received something this long before now are looked at.
FULL_SCAN_SECONDS = 300.0


@dataclass(frozen=True)
class CompletedStudy:
    """The outcome of completing one study."""

    study_instance_uid: str
    reason: str  # completion.QUIET | DEADLINE | REPROCESS
    decision: RoutingDecision
    job_id: int | None
    new_job: bool


@dataclass(frozen=True)
class _InstanceRow:
    instance_pk: int
    facts: InstanceFacts
    content_sha256: str
    file_path: str
    received_at: datetime


def model_reference(settings: Settings) -> str:
    """The model as configured, for idempotency keys (the exact identity is recorded on the job)."""
    return f"{settings.model.path}|{settings.model.backend}"


def _insert_ignore(connection: Connection, table: Any) -> Any:
    return postgresql.insert(table) if connection.dialect.name == "postgresql" else sqlite.insert(table)


def study_instances(connection: Connection, study_pk: int) -> list[_InstanceRow]:
    rows = connection.execute(
        select(
            INSTANCES.c.id,
            INSTANCES.c.sop_instance_uid,
            INSTANCES.c.sop_class_uid,
            INSTANCES.c.view_position,
            INSTANCES.c.image_laterality,
            INSTANCES.c.calling_ae_title,
            INSTANCES.c.called_ae_title,
            INSTANCES.c.content_sha256,
            INSTANCES.c.file_path,
            INSTANCES.c.received_at,
            SERIES.c.modality,
            SERIES.c.body_part_examined,
            SERIES.c.laterality,
            SERIES.c.series_description,
        )
        .join(SERIES, INSTANCES.c.series_pk == SERIES.c.id)
        .where(SERIES.c.study_pk == study_pk)
        .order_by(SERIES.c.series_number, INSTANCES.c.instance_number, INSTANCES.c.id)
    ).all()
    return [
        _InstanceRow(
            instance_pk=int(row.id),
            facts=InstanceFacts(
                sop_instance_uid=row.sop_instance_uid,
                sop_class=row.sop_class_uid,
                modality=row.modality,
                body_part=row.body_part_examined,
                view_position=row.view_position,
                laterality=row.image_laterality or row.laterality,
                series_description=row.series_description,
                calling_ae=row.calling_ae_title,
                called_ae=row.called_ae_title,
            ),
            content_sha256=row.content_sha256,
            file_path=row.file_path,
            received_at=row.received_at,
        )
        for row in rows
    ]


class Completer:
    """Runs the completion check (an APScheduler job in ``gazex serve``) and ``gazex reprocess``."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        on_job_queued: Callable[[], None] | None = None,
        live: Callable[[], Settings] | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._live = live or (lambda: settings)  # routing rules and destinations in force now
        self._clock = clock
        self._on_job_queued = on_job_queued
        self._model_ref = model_reference(settings)
        self._last_full_scan: datetime | None = None

    # -- the periodic check ---------------------------------------------------------------
    def check(self) -> list[CompletedStudy]:
        """Complete every pending study that is due now; returns what was completed."""
        now = self._clock.now()
        full = self._last_full_scan is None or (now - self._last_full_scan).total_seconds() >= FULL_SCAN_SECONDS
        candidates = self._pending(now, full)
        if full:
            self._last_full_scan = now
        done: list[CompletedStudy] = []
        for study_pk in candidates:
            result = self.complete_study(study_pk)
            if result is not None:
                done.append(result)
        if any(result.new_job for result in done) and self._on_job_queued is not None:
            self._on_job_queued()
        return done

    def _pending(self, now: datetime, full: bool) -> list[int]:
        """Study keys that may be due: pending by their timestamps, or recently completed (instance set re-checked)."""
        settings = self._settings.completion
        recent = now - timedelta(seconds=RECHECK_SECONDS)
        by_time = or_(
            STATES.c.id.is_(None),
            STATES.c.completed_through.is_(None),
            STUDIES.c.last_received_at > STATES.c.completed_through,
        )
        query = (
            select(STUDIES.c.id, by_time.label("pending"), STATES.c.instance_set_sha256)
            .select_from(STUDIES.outerjoin(STATES, STATES.c.study_pk == STUDIES.c.id))
            .where(or_(by_time, STATES.c.completed_at > recent))
        )
        if not full:
            window = settings.quiet_seconds + RECHECK_SECONDS + FULL_SCAN_SECONDS
            query = query.where(STUDIES.c.last_received_at > now - timedelta(seconds=window))
        with self._engine.connect() as connection:
            rows = connection.execute(query.order_by(STUDIES.c.last_received_at)).all()
            pending = [int(row.id) for row in rows if row.pending]
            recheck = {int(row.id): row.instance_set_sha256 for row in rows if not row.pending}
            if recheck:
                pending += self._changed_sets(connection, recheck)
        return pending

    @staticmethod
    def _changed_sets(connection: Connection, completed: dict[int, str | None]) -> list[int]:
        rows = connection.execute(
            select(SERIES.c.study_pk, INSTANCES.c.sop_instance_uid, INSTANCES.c.content_sha256)
            .join(SERIES, INSTANCES.c.series_pk == SERIES.c.id)
            .where(SERIES.c.study_pk.in_(list(completed)))
        ).all()
        sets: dict[int, list[tuple[str, str]]] = {pk: [] for pk in completed}
        for row in rows:
            sets[int(row.study_pk)].append((row.sop_instance_uid, row.content_sha256))
        return [pk for pk, pairs in sets.items() if keys.instance_set_sha256(pairs) != completed[pk]]

    # -- completing one study -------------------------------------------------------------
    def complete_study(self, study_pk: int, *, reprocess_nonce: str | None = None) -> CompletedStudy | None:
        """Complete, route and queue one study if it is (still) due; ``reprocess_nonce`` forces a new job."""
        now = self._clock.now()
        if reprocess_nonce is None and not self._looks_due(study_pk, now):
            return None  # decided without writing: SQLite's single writer stays free for the C-STORE handler
        with self._engine.begin() as connection:
            # the first statement writes, so SQLite takes its writer lock now, not mid-transaction
            connection.execute(
                _insert_ignore(connection, STATES).values(study_pk=study_pk, completions=0).on_conflict_do_nothing()
            )
            state = connection.execute(select(STATES).where(STATES.c.study_pk == study_pk).with_for_update()).one()
            study = connection.execute(
                select(STUDIES.c.study_instance_uid, STUDIES.c.first_received_at, STUDIES.c.last_received_at).where(
                    STUDIES.c.id == study_pk
                )
            ).one()
            instances = study_instances(connection, study_pk)
            set_sha256 = keys.instance_set_sha256((row.facts.sop_instance_uid, row.content_sha256) for row in instances)
            if reprocess_nonce is None:
                reason = self._due(study, state, instances, set_sha256, now)
                if reason is None:
                    return None
            else:
                reason = completion.REPROCESS
            live = self._live()
            decision = route_study(live.routing.rules, [row.facts for row in instances], list(live.destinations))
            job_id: int | None = None
            new_job = False
            if decision.routed:
                job_id, new_job = self._queue_job(
                    connection, study_pk, study.study_instance_uid, decision, instances, now, reprocess_nonce
                )
            connection.execute(
                update(STATES)
                .where(STATES.c.id == state.id)
                .values(
                    routing="routed" if decision.routed else "not_routed",
                    completed_through=study.last_received_at,
                    completed_at=now,
                    completion_reason=reason,
                    completions=STATES.c.completions + 1,
                    instance_set_sha256=set_sha256,
                    rule=decision.rule,
                    reason=decision.reason,
                    job_pk=job_id,
                )
            )
        result = CompletedStudy(study.study_instance_uid, reason, decision, job_id, new_job)
        _log_completion(result, state.completions)
        return result

    def _looks_due(self, study_pk: int, now: datetime) -> bool:
        with self._engine.connect() as connection:
            state = connection.execute(select(STATES).where(STATES.c.study_pk == study_pk)).first()
            study = connection.execute(
                select(STUDIES.c.first_received_at, STUDIES.c.last_received_at).where(STUDIES.c.id == study_pk)
            ).first()
            if study is None:
                return False
            instances = study_instances(connection, study_pk)
        set_sha256 = keys.instance_set_sha256((row.facts.sop_instance_uid, row.content_sha256) for row in instances)
        return self._due(study, state, instances, set_sha256, now) is not None

    def _due(
        self, study: Any, state: Any, instances: Sequence[_InstanceRow], set_sha256: str, now: datetime
    ) -> str | None:
        completed_through = state.completed_through if state is not None else None
        completed_set = state.instance_set_sha256 if state is not None else None
        if not completion.is_pending(study.last_received_at, completed_through, set_sha256, completed_set):
            return None
        if completed_through is None:
            opened_at = study.first_received_at
        else:
            later = [row.received_at for row in instances if row.received_at > completed_through]
            opened_at = min(later) if later else study.last_received_at
        settings = self._settings.completion
        return completion.completion_due(
            study.last_received_at, opened_at, now, settings.quiet_seconds, settings.max_wait_seconds
        )

    def _queue_job(
        self,
        connection: Connection,
        study_pk: int,
        study_uid: str,
        decision: RoutingDecision,
        instances: Sequence[_InstanceRow],
        now: datetime,
        nonce: str | None,
    ) -> tuple[int, bool]:
        """The job for this instance set and model: the existing one, or a new one superseding older queued ones."""
        by_uid = {row.facts.sop_instance_uid: row for row in instances}
        analysed = [by_uid[facts.sop_instance_uid] for facts in decision.analyze]
        context = [by_uid[facts.sop_instance_uid] for facts in decision.context]
        key = keys.idempotency_key(
            study_uid, ((row.facts.sop_instance_uid, row.content_sha256) for row in analysed), self._model_ref, nonce
        )
        existing = connection.execute(select(JOBS.c.id).where(JOBS.c.idempotency_key == key)).scalar_one_or_none()
        if existing is not None:
            return int(existing), False
        job_id = int(
            connection.execute(
                insert(JOBS)
                .values(
                    study_pk=study_pk,
                    study_instance_uid=study_uid,
                    idempotency_key=key,
                    analysis_id=keys.analysis_id(key),
                    rule=decision.rule,
                    outputs=",".join(decision.outputs),
                    destinations=",".join(decision.destinations),
                    model_ref=self._model_ref,
                    status=JobStatus.QUEUED,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
                .returning(JOBS.c.id)
            ).scalar_one()
        )
        connection.execute(
            insert(JOB_INSTANCES),
            [
                {
                    "job_pk": job_id,
                    "instance_pk": row.instance_pk,
                    "sop_instance_uid": row.facts.sop_instance_uid,
                    "content_sha256": row.content_sha256,
                    "file_path": row.file_path,
                    "role": role,
                }
                for role, rows in (("analyze", analysed), ("context", context))
                for row in rows
            ],
        )
        connection.execute(
            update(JOBS)
            .where(and_(JOBS.c.study_pk == study_pk, JOBS.c.status == JobStatus.QUEUED, JOBS.c.id != job_id))
            .values(status=JobStatus.SUPERSEDED, finished_at=now, last_error=f"superseded by job {job_id}")
        )
        return job_id, True


def _log_completion(result: CompletedStudy, earlier_completions: int) -> None:
    round_ = "re-opened study" if earlier_completions else "study"
    if result.decision.routed:
        queued = f"queued job {result.job_id}" if result.new_job else f"job {result.job_id} already covers it"
        LOGGER.info(
            "%s %s complete (%s): %s; %s",
            round_,
            result.study_instance_uid,
            result.reason,
            result.decision.reason,
            queued,
        )
    else:
        LOGGER.info("%s %s complete (%s): %s", round_, result.study_instance_uid, result.reason, result.decision.reason)


def study_pk_of(engine: Engine, study_instance_uid: str) -> int | None:
    with engine.connect() as connection:
        value = connection.execute(
            select(STUDIES.c.id).where(STUDIES.c.study_instance_uid == study_instance_uid)
        ).scalar_one_or_none()
    return int(value) if value is not None else None


def count_pending(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count())
                .select_from(STUDIES.outerjoin(STATES, STATES.c.study_pk == STUDIES.c.id))
                .where(
                    or_(
                        STATES.c.id.is_(None),
                        STATES.c.completed_through.is_(None),
                        STUDIES.c.last_received_at > STATES.c.completed_through,
                    )
                )
            ).scalar_one()
        )
