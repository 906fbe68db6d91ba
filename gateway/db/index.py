"""Recording received instances in the index: new, duplicate, or replacing an earlier copy.

This is the C-STORE handler's hot path, so it uses SQLAlchemy Core on the ORM's tables and
remembers the patient, study and series rows it has seen: a typical instance of a known
series costs one SELECT, one INSERT, two small UPDATEs and the commit.  The memory is only
updated after a commit, and cleared when a key conflict shows another writer was faster.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, case, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from gateway.db.models import Instance, InstanceReplacement, Patient, Series, Study
from gateway.dicom.header import InstanceHeader

PATIENTS: Table = Patient.__table__  # type: ignore[assignment]
STUDIES: Table = Study.__table__  # type: ignore[assignment]
SERIES: Table = Series.__table__  # type: ignore[assignment]
INSTANCES: Table = Instance.__table__  # type: ignore[assignment]
REPLACEMENTS: Table = InstanceReplacement.__table__  # type: ignore[assignment]

#: How many patients, studies and series the index remembers.
ROW_MEMORY = 20_000


@dataclass(frozen=True)
class Arrival:
    """How and when a copy arrived."""

    calling_ae_title: str
    called_ae_title: str
    peer_address: str | None
    received_at: datetime
    transfer_syntax_uid: str


@dataclass(frozen=True)
class StoredCopy:
    """Where a copy's bytes are in the spool, and what they hash to."""

    file_path: str
    file_size: int
    content_sha256: str


@dataclass(frozen=True)
class KnownCopy:
    """What the index holds for a SOP Instance UID already received."""

    file_path: str
    content_sha256: str
    transfer_syntax_uid: str


class IndexOutcome(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    REPLACED = "replaced"


@dataclass(frozen=True)
class IndexResult:
    outcome: IndexOutcome
    instance_pk: int
    previous_file_path: str | None = None


def is_same_copy(known: KnownCopy, copy: StoredCopy, transfer_syntax_uid: str) -> bool:
    """Identical bytes in the same transfer syntax: a duplicate, not a replacement."""
    return known.content_sha256 == copy.content_sha256 and known.transfer_syntax_uid == transfer_syntax_uid


class _Memory(OrderedDict[Any, tuple[int, tuple[Any, ...]]]):
    """key -> (primary key, the column values last written), least recently used dropped first."""

    def remember(self, key: Any, value: tuple[int, tuple[Any, ...]]) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > ROW_MEMORY:
            self.popitem(last=False)


@dataclass
class RowMemory:
    """The patient, study and series rows already in the database, by their DICOM keys."""

    patients: _Memory = field(default_factory=_Memory)
    studies: _Memory = field(default_factory=_Memory)
    series: _Memory = field(default_factory=_Memory)

    def update(self, other: RowMemory) -> None:
        for mine, theirs in (
            (self.patients, other.patients),
            (self.studies, other.studies),
            (self.series, other.series),
        ):
            for key, value in theirs.items():
                mine.remember(key, value)

    def clear(self) -> None:
        self.patients.clear()
        self.studies.clear()
        self.series.clear()


def _insert_ignore(connection: Connection, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the connection's dialect."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _latest(column: Any, value: datetime) -> Any:
    """SQL for ``max(column, value)`` that works on SQLite and PostgreSQL."""
    return case((column < value, value), else_=column)


def _merge(current: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
    """The latest copy's values win, but a missing value does not erase a known one."""
    return tuple(old if value is None else value for old, value in zip(current, new, strict=True))


def find_copy(connection: Connection, sop_instance_uid: str) -> KnownCopy | None:
    row = connection.execute(
        select(INSTANCES.c.file_path, INSTANCES.c.content_sha256, INSTANCES.c.transfer_syntax_uid).where(
            INSTANCES.c.sop_instance_uid == sop_instance_uid
        )
    ).first()
    if row is None:
        return None
    return KnownCopy(file_path=row[0], content_sha256=row[1], transfer_syntax_uid=row[2])


class _Recorder:
    """One transaction's worth of upserts; what it learns goes to ``learned`` until the commit."""

    def __init__(self, connection: Connection, memory: RowMemory) -> None:
        self.connection = connection
        self.memory = memory
        self.learned = RowMemory()

    def _row(
        self,
        table: Table,
        memory: _Memory,
        learned: _Memory,
        key: Any,
        where: Any,
        columns: tuple[str, ...],
        values: tuple[Any, ...],
        insert_extra: dict[str, Any],
        touch: datetime | None,
    ) -> int:
        """Insert-if-absent, then update what changed (and ``last_received_at``); returns the primary key."""
        known = memory.get(key)
        if known is None:
            self.connection.execute(
                _insert_ignore(self.connection, table)
                .values(**dict(zip(columns, values, strict=True)), **insert_extra)
                .on_conflict_do_nothing()
            )
            row = self.connection.execute(
                select(table.c.id, *(table.c[name] for name in columns)).where(where).with_for_update()
            ).one()
            known = (int(row[0]), tuple(row[1:]))
        pk, current = known
        merged = _merge(current, values)
        changes = {name: value for name, value, old in zip(columns, merged, current, strict=True) if value != old}
        if touch is not None:
            changes["last_received_at"] = _latest(table.c.last_received_at, touch)
        if changes:
            self.connection.execute(update(table).where(table.c.id == pk).values(**changes))
        learned.remember(key, (pk, merged))
        return pk

    def patient(self, header: InstanceHeader) -> int:
        key = (header.patient_id, header.issuer_of_patient_id)
        return self._row(
            PATIENTS,
            self.memory.patients,
            self.learned.patients,
            key,
            (PATIENTS.c.patient_id == key[0]) & (PATIENTS.c.issuer_of_patient_id == key[1]),
            ("patient_name", "patient_birth_date", "patient_sex"),
            (header.patient_name, header.patient_birth_date, header.patient_sex),
            {"patient_id": key[0], "issuer_of_patient_id": key[1]},
            None,
        )

    def study(self, header: InstanceHeader, patient_pk: int, received_at: datetime) -> int:
        return self._row(
            STUDIES,
            self.memory.studies,
            self.learned.studies,
            header.study_instance_uid,
            STUDIES.c.study_instance_uid == header.study_instance_uid,
            ("patient_pk", "study_date", "study_time", "accession_number", "study_id", "study_description"),
            (
                patient_pk,
                header.study_date,
                header.study_time,
                header.accession_number,
                header.study_id,
                header.study_description,
            ),
            {
                "study_instance_uid": header.study_instance_uid,
                "first_received_at": received_at,
                "last_received_at": received_at,
            },
            received_at,
        )

    def series(self, header: InstanceHeader, study_pk: int, received_at: datetime) -> int:
        return self._row(
            SERIES,
            self.memory.series,
            self.learned.series,
            header.series_instance_uid,
            SERIES.c.series_instance_uid == header.series_instance_uid,
            ("study_pk", "modality", "body_part_examined", "series_description", "series_number", "laterality"),
            (
                study_pk,
                header.modality,
                header.body_part_examined,
                header.series_description,
                header.series_number,
                header.laterality,
            ),
            {
                "series_instance_uid": header.series_instance_uid,
                "first_received_at": received_at,
                "last_received_at": received_at,
            },
            received_at,
        )


def _instance_values(header: InstanceHeader, copy: StoredCopy, arrival: Arrival, series_pk: int) -> dict[str, Any]:
    return {
        "series_pk": series_pk,
        "sop_class_uid": header.sop_class_uid,
        "instance_number": header.instance_number,
        "image_type": header.image_type,
        "view_position": header.view_position,
        "image_laterality": header.image_laterality,
        "patient_orientation": header.patient_orientation,
        "photometric_interpretation": header.photometric_interpretation,
        "rows": header.rows,
        "columns": header.columns,
        "number_of_frames": header.number_of_frames,
        "transfer_syntax_uid": arrival.transfer_syntax_uid,
        "calling_ae_title": arrival.calling_ae_title,
        "called_ae_title": arrival.called_ae_title,
        "peer_address": arrival.peer_address,
        "received_at": arrival.received_at,
        "file_path": copy.file_path,
        "file_size": copy.file_size,
        "content_sha256": copy.content_sha256,
    }


def record_instance(
    connection: Connection,
    header: InstanceHeader,
    copy: StoredCopy,
    arrival: Arrival,
    memory: RowMemory | None = None,
) -> tuple[IndexResult, RowMemory]:
    """Index one received copy on ``connection`` (the caller commits); returns what was learned.

    * Unknown SOP Instance UID: patient, study, series and instance rows (NEW).
    * Same UID, same bytes and transfer syntax: nothing changes (DUPLICATE).
    * Same UID, different bytes: the instance row points at the new copy and an
      ``instance_replacements`` row keeps what it replaced (REPLACED).
    NEW and REPLACED move the study's and series' ``last_received_at`` (study completion);
    a DUPLICATE does not.
    """
    memory = memory if memory is not None else RowMemory()
    existing = connection.execute(
        select(
            INSTANCES.c.id,
            INSTANCES.c.series_pk,
            INSTANCES.c.content_sha256,
            INSTANCES.c.transfer_syntax_uid,
            INSTANCES.c.file_path,
            INSTANCES.c.file_size,
            INSTANCES.c.received_at,
        )
        .where(INSTANCES.c.sop_instance_uid == header.sop_instance_uid)
        .with_for_update()
    ).first()
    recorder = _Recorder(connection, memory)
    if existing is not None and is_same_copy(
        KnownCopy(existing.file_path, existing.content_sha256, existing.transfer_syntax_uid),
        copy,
        arrival.transfer_syntax_uid,
    ):
        if existing.file_path != copy.file_path:  # the stored file had gone; this copy put it back
            connection.execute(update(INSTANCES).where(INSTANCES.c.id == existing.id).values(file_path=copy.file_path))
        return IndexResult(IndexOutcome.DUPLICATE, int(existing.id)), recorder.learned
    patient_pk = recorder.patient(header)
    study_pk = recorder.study(header, patient_pk, arrival.received_at)
    series_pk = recorder.series(header, study_pk, arrival.received_at)
    values = _instance_values(header, copy, arrival, series_pk)
    if existing is None:
        instance_pk = connection.execute(
            insert(INSTANCES).values(sop_instance_uid=header.sop_instance_uid, **values).returning(INSTANCES.c.id)
        ).scalar_one()
        return IndexResult(IndexOutcome.NEW, int(instance_pk)), recorder.learned
    previous_series = connection.execute(
        select(SERIES.c.series_instance_uid).where(SERIES.c.id == existing.series_pk)
    ).scalar_one()
    connection.execute(
        insert(REPLACEMENTS).values(
            instance_pk=existing.id,
            sop_instance_uid=header.sop_instance_uid,
            replaced_at=arrival.received_at,
            previous_series_instance_uid=previous_series,
            previous_content_sha256=existing.content_sha256,
            previous_file_size=existing.file_size,
            previous_transfer_syntax_uid=existing.transfer_syntax_uid,
            previous_received_at=existing.received_at,
            content_sha256=copy.content_sha256,
            calling_ae_title=arrival.calling_ae_title,
        )
    )
    connection.execute(update(INSTANCES).where(INSTANCES.c.id == existing.id).values(**values))
    result = IndexResult(IndexOutcome.REPLACED, int(existing.id), previous_file_path=existing.file_path)
    return result, recorder.learned


class InstanceIndex:
    """The index as the C-STORE handler uses it: one short transaction per instance.

    Writes from this process are serialised (SQLite has one writer anyway, and it keeps the
    row memory consistent); a unique-key race with another process is retried once.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._write_lock = threading.Lock()
        self._memory = RowMemory()

    def find(self, sop_instance_uid: str) -> KnownCopy | None:
        with self._engine.connect() as connection:
            return find_copy(connection, sop_instance_uid)

    def record(self, header: InstanceHeader, copy: StoredCopy, arrival: Arrival) -> IndexResult:
        with self._write_lock:
            try:
                return self._record_once(header, copy, arrival)
            except IntegrityError:
                # another process wrote the same patient/study/series/instance a moment ago
                self._memory.clear()
                return self._record_once(header, copy, arrival)

    def _record_once(self, header: InstanceHeader, copy: StoredCopy, arrival: Arrival) -> IndexResult:
        with self._engine.begin() as connection:
            result, learned = record_instance(connection, header, copy, arrival, self._memory)
        self._memory.update(learned)  # only what was committed
        return result
