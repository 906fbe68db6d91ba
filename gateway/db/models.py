"""The index: patients, studies, series and instances as received, plus every replacement.

Typed SQLAlchemy 2.0 ORM.  Columns hold the header fields that routing and study completion
need; the instance's bytes live in the spool at ``file_path`` (relative to the spool root).
Text columns are unbounded because senders do not always respect DICOM's value lengths.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

#: Constraint names Alembic can rely on, on SQLite and PostgreSQL alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps stored in the index must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Patient(Base):
    """A patient as the sender identifies them: Patient ID within its issuer (both may be empty)."""

    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("patient_id", "issuer_of_patient_id", name="uq_patients_identity"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String, default="")
    issuer_of_patient_id: Mapped[str] = mapped_column(String, default="")
    patient_name: Mapped[str | None] = mapped_column(String)
    patient_birth_date: Mapped[str | None] = mapped_column(String)
    patient_sex: Mapped[str | None] = mapped_column(String)

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    """A study; ``first_received_at``/``last_received_at`` drive study completion."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String, unique=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    study_date: Mapped[str | None] = mapped_column(String)
    study_time: Mapped[str | None] = mapped_column(String)
    accession_number: Mapped[str | None] = mapped_column(String)
    study_id: Mapped[str | None] = mapped_column(String)
    study_description: Mapped[str | None] = mapped_column(String)
    first_received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    """A series with the fields routing rules test (modality, body part, description, laterality)."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(String, unique=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    modality: Mapped[str | None] = mapped_column(String)
    body_part_examined: Mapped[str | None] = mapped_column(String)
    series_description: Mapped[str | None] = mapped_column(String)
    series_number: Mapped[int | None] = mapped_column(Integer)
    laterality: Mapped[str | None] = mapped_column(String)
    first_received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    """One SOP instance: its header fields, where it came from, and where its bytes are."""

    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String, unique=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    image_type: Mapped[str | None] = mapped_column(String)
    view_position: Mapped[str | None] = mapped_column(String)
    image_laterality: Mapped[str | None] = mapped_column(String)
    patient_orientation: Mapped[str | None] = mapped_column(String)
    photometric_interpretation: Mapped[str | None] = mapped_column(String)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax_uid: Mapped[str] = mapped_column(String)
    calling_ae_title: Mapped[str] = mapped_column(String)
    called_ae_title: Mapped[str] = mapped_column(String)
    peer_address: Mapped[str | None] = mapped_column(String)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    file_path: Mapped[str] = mapped_column(String)
    file_size: Mapped[int] = mapped_column(BigInteger)
    content_sha256: Mapped[str] = mapped_column(String(64))

    series: Mapped[Series] = relationship(back_populates="instances")
    replacements: Mapped[list[InstanceReplacement]] = relationship(back_populates="instance")


class InstanceReplacement(Base):
    """A received copy with different bytes replaced the stored one (e.g. a study resent after correction)."""

    __tablename__ = "instance_replacements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_pk: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String, index=True)
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime)
    previous_series_instance_uid: Mapped[str] = mapped_column(String)
    previous_content_sha256: Mapped[str] = mapped_column(String(64))
    previous_file_size: Mapped[int] = mapped_column(BigInteger)
    previous_transfer_syntax_uid: Mapped[str] = mapped_column(String)
    previous_received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    content_sha256: Mapped[str] = mapped_column(String(64))
    calling_ae_title: Mapped[str] = mapped_column(String)

    instance: Mapped[Instance] = relationship(back_populates="replacements")


# -- after ingest: completion, jobs, outputs and deliveries -----------------------------------


class StudyState(Base):
    """A study's completion and routing: when it was last completed, and what became of it.

    A study is *pending* (still receiving, or re-opened) when it has no state yet or its
    ``last_received_at`` moved past ``completed_through``.  ``job_pk`` is the job of the
    latest routed completion; ``reason`` says why the study was (not) routed.
    """

    __tablename__ = "study_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), unique=True)
    routing: Mapped[str | None] = mapped_column(String)  # "routed" | "not_routed"; null until first completed
    completed_through: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    completion_reason: Mapped[str | None] = mapped_column(String)  # "quiet" | "deadline" | "reprocess"
    completions: Mapped[int] = mapped_column(Integer, default=0)
    instance_set_sha256: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str | None] = mapped_column(String)
    reason: Mapped[str | None] = mapped_column(String)
    job_pk: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Job(Base):
    """One analysis of one study: claimed with a lease, analysed, encoded, written to the outbox.

    ``status``: queued -> running -> done | failed, or superseded (a newer job of the same
    study was queued before this one ran), or cancelled (by an operator, while queued).
    ``idempotency_key`` is unique: the study, its
    analysed instances' hashes and the model, so completing the same study twice queues one job.
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    study_instance_uid: Mapped[str] = mapped_column(String)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    analysis_id: Mapped[str] = mapped_column(String(40))
    rule: Mapped[str] = mapped_column(String)
    outputs: Mapped[str] = mapped_column(String)  # comma-separated output kinds
    destinations: Mapped[str] = mapped_column(String)  # comma-separated destination names
    model_ref: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String)
    processed_by: Mapped[str | None] = mapped_column(String)
    model_name: Mapped[str | None] = mapped_column(String)
    model_version: Mapped[str | None] = mapped_column(String)
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    model_backend: Mapped[str | None] = mapped_column(String)
    analysis_seconds: Mapped[float | None] = mapped_column(Float)
    findings_present: Mapped[int | None] = mapped_column(Integer)
    #: What the runtime cut or dropped from the analysis (its SR is PARTIAL), per image; None when whole.
    omissions: Mapped[str | None] = mapped_column(Text)
    predecessor_job_pk: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))


class JobInstance(Base):
    """An instance a job takes: analysed, or kept as context (e.g. a lateral view)."""

    __tablename__ = "job_instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    instance_pk: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String)
    content_sha256: Mapped[str] = mapped_column(String(64))
    file_path: Mapped[str] = mapped_column(String)
    role: Mapped[str] = mapped_column(String)  # "analyze" | "context"


class Output(Base):
    """One DICOM object a job wrote to the outbox."""

    __tablename__ = "outputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    kind: Mapped[str] = mapped_column(String)
    sop_class_uid: Mapped[str] = mapped_column(String)
    sop_instance_uid: Mapped[str] = mapped_column(String, unique=True)
    series_instance_uid: Mapped[str] = mapped_column(String)
    file_path: Mapped[str] = mapped_column(String)  # relative to the outbox
    file_size: Mapped[int] = mapped_column(BigInteger)
    content_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Delivery(Base):
    """A job's outputs to one destination: pending -> sending -> delivered | pending (retry) | dead."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("job_pk", "destination", name="uq_deliveries_job_destination"),
        Index("ix_deliveries_claim", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    destination: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String)


class DeliveryItem(Base):
    """One output within a delivery; once ``acknowledged`` it is never sent to that destination again."""

    __tablename__ = "delivery_items"
    __table_args__ = (UniqueConstraint("delivery_pk", "output_pk", name="uq_delivery_items_delivery_output"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_pk: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    output_pk: Mapped[int] = mapped_column(ForeignKey("outputs.id"), index=True)
    status: Mapped[str] = mapped_column(String)  # "pending" | "acknowledged" | "failed"
    status_code: Mapped[int | None] = mapped_column(Integer)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String)


class Installation(Base):
    """This installation's identity: one row, written by the migration that creates the table.

    ``installation_id`` (a random UUID) goes into every output UID's derivation, so that two
    installations, or one whose database was rebuilt (and so counts its jobs again), never
    issue one UID for different objects.  It lives with the jobs it keeps apart.
    """

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    installation_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConfigRevision(Base):
    """One revision of the live configuration (``gateway.config.live``), newest wins.

    ``document`` is JSON: the sections IT may change while the gateway runs (our AE titles, the
    allowed callers, destinations and routing), complete, as they stand after the change.
    Revision 1 is seeded from the YAML file at first start (actor ``"seed"``).
    """

    __tablename__ = "config_revisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String)
    summary: Mapped[str] = mapped_column(Text)
    document: Mapped[str] = mapped_column(Text)


class User(Base):
    """An account of the console and API: role ``viewer``, ``operator`` or ``admin``."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String, unique=True)
    role: Mapped[str] = mapped_column(String)
    password_hash: Mapped[str] = mapped_column(String)  # argon2id, PHC string
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token of a user; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String)
    token_hash: Mapped[str] = mapped_column(String, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A console login: the cookie's SHA-256 and the session's CSRF token."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    session_hash: Mapped[str] = mapped_column(String, unique=True)
    csrf_token: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Pull(Base):
    """A request to pull studies from a source (``gazex pull``, ``POST /api/v1/pulls``).

    ``query`` is JSON (``gateway.pull.query.PullQuery``).  A queued pull is first queried
    (C-FIND or QIDO-RS), which records one :class:`PullItem` per study found; then each item is
    retrieved.  ``state``: queued, running, done, failed or cancelled.
    """

    __tablename__ = "pulls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String)
    query: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String, index=True)
    created_by: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # of the query
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    found: Mapped[int | None] = mapped_column(Integer)  # null until the query answered
    retrieved: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class PullItem(Base):
    """One study of a pull: ``state`` pending, retrieving, done, failed or cancelled.

    ``started_at`` is when its latest retrieve began: the sliding window of
    ``max_studies_per_hour`` counts these, so a restart does not reset the limit.
    """

    __tablename__ = "pull_items"
    __table_args__ = (UniqueConstraint("pull_pk", "study_instance_uid", name="uq_pull_items_pull_study"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pull_pk: Mapped[int] = mapped_column(ForeignKey("pulls.id"), index=True)
    source: Mapped[str] = mapped_column(String, index=True)
    study_instance_uid: Mapped[str] = mapped_column(String)
    state: Mapped[str] = mapped_column(String, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    instances: Mapped[int] = mapped_column(Integer, default=0)  # retrieved by the latest attempt
    failed_instances: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
