"""The index on SQLite and on PostgreSQL: new, duplicate and replaced instances, and their rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from gateway.db import Instance, InstanceReplacement, Patient, Series, Study, create_database_engine, upgrade
from gateway.db.index import Arrival, IndexOutcome, InstanceIndex, StoredCopy
from gateway.dicom.header import InstanceHeader

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

HEADER = InstanceHeader(
    sop_class_uid="1.2.840.10008.5.1.4.1.1.1",
    sop_instance_uid="1.2.3.4.1",
    study_instance_uid="1.2.3",
    series_instance_uid="1.2.3.4",
    patient_id="PID1",
    patient_name="DOE^JANE",
    patient_birth_date="19700101",
    study_date="20260105",
    accession_number="ACC1",
    modality="CR",
    body_part_examined="CHEST",
    series_description="PA",
    series_number=1,
    instance_number=1,
    view_position="PA",
    image_laterality=None,
    rows=1955,
    columns=1841,
)


def utc(moment: datetime) -> datetime:
    """SQLite gives naive timestamps back through Core; they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def copy_of(name: str, digest: str = "a" * 64, size: int = 100) -> StoredCopy:
    return StoredCopy(file_path=f"1.2.3/1.2.3.4/{name}", file_size=size, content_sha256=digest)


def arrival(at: datetime, transfer_syntax: str = "1.2.840.10008.1.2.1", calling: str = "PACS") -> Arrival:
    return Arrival(
        calling_ae_title=calling,
        called_ae_title="GAZEX",
        peer_address="10.0.0.5",
        received_at=at,
        transfer_syntax_uid=transfer_syntax,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = create_database_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def count(engine: Engine, model: type) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def test_a_new_instance_creates_patient_study_series_and_instance(engine: Engine) -> None:
    index = InstanceIndex(engine)
    result = index.record(HEADER, copy_of("a.dcm"), arrival(T0))
    assert result.outcome is IndexOutcome.NEW
    with engine.connect() as connection:
        instance = connection.execute(select(Instance)).one()
        series = connection.execute(select(Series)).one()
        study = connection.execute(select(Study)).one()
        patient = connection.execute(select(Patient)).one()
    assert (instance.sop_instance_uid, instance.view_position, instance.rows, instance.columns) == (
        "1.2.3.4.1",
        "PA",
        1955,
        1841,
    )
    assert (instance.calling_ae_title, instance.called_ae_title, instance.peer_address) == ("PACS", "GAZEX", "10.0.0.5")
    assert (instance.file_path, instance.file_size, instance.content_sha256) == ("1.2.3/1.2.3.4/a.dcm", 100, "a" * 64)
    assert instance.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert (series.modality, series.body_part_examined, series.series_description) == ("CR", "CHEST", "PA")
    assert study.accession_number == "ACC1"
    assert patient.patient_name == "DOE^JANE"
    assert utc(study.first_received_at) == T0


def test_the_same_bytes_again_change_nothing(engine: Engine) -> None:
    index = InstanceIndex(engine)
    index.record(HEADER, copy_of("a.dcm"), arrival(T0))
    again = index.record(HEADER, copy_of("a.dcm"), arrival(T0 + timedelta(minutes=5)))
    assert again.outcome is IndexOutcome.DUPLICATE
    assert count(engine, Instance) == 1
    assert count(engine, InstanceReplacement) == 0
    with engine.connect() as connection:
        study = connection.execute(select(Study.last_received_at)).scalar_one()
    assert utc(study) == T0  # a duplicate is no new activity


def test_different_bytes_replace_the_copy_and_record_it(engine: Engine) -> None:
    index = InstanceIndex(engine)
    index.record(HEADER, copy_of("a.dcm"), arrival(T0))
    corrected = replace(HEADER, series_instance_uid="1.2.3.5", series_description="PA corrected")
    later = T0 + timedelta(hours=2)
    result = index.record(corrected, copy_of("b.dcm", digest="b" * 64, size=120), arrival(later, calling="QA"))
    assert result.outcome is IndexOutcome.REPLACED
    assert result.previous_file_path == "1.2.3/1.2.3.4/a.dcm"
    assert count(engine, Instance) == 1
    with engine.connect() as connection:
        instance = connection.execute(select(Instance)).one()
        replacement = connection.execute(select(InstanceReplacement)).one()
        new_series = connection.execute(select(Series).where(Series.series_instance_uid == "1.2.3.5")).one()
        last = connection.execute(select(Study.last_received_at)).scalar_one()
    assert (instance.content_sha256, instance.file_path, instance.file_size) == ("b" * 64, "1.2.3/1.2.3.4/b.dcm", 120)
    assert instance.series_pk == new_series.id and new_series.series_description == "PA corrected"
    assert replacement.previous_content_sha256 == "a" * 64
    assert replacement.previous_series_instance_uid == "1.2.3.4"
    assert replacement.previous_file_size == 100
    assert replacement.content_sha256 == "b" * 64
    assert replacement.calling_ae_title == "QA"
    assert utc(last) == later  # the study is seen again


def test_the_same_bytes_in_another_transfer_syntax_are_a_replacement(engine: Engine) -> None:
    index = InstanceIndex(engine)
    index.record(HEADER, copy_of("a.dcm"), arrival(T0))
    result = index.record(HEADER, copy_of("a.dcm"), arrival(T0, transfer_syntax="1.2.840.10008.1.2"))
    assert result.outcome is IndexOutcome.REPLACED


def test_study_times_keep_the_first_and_the_latest(engine: Engine) -> None:
    index = InstanceIndex(engine)
    index.record(HEADER, copy_of("a.dcm"), arrival(T0 + timedelta(minutes=10)))
    second = replace(HEADER, sop_instance_uid="1.2.3.4.2", view_position="LL")
    index.record(second, copy_of("b.dcm", "b" * 64), arrival(T0))  # an older timestamp arriving later
    third = replace(HEADER, sop_instance_uid="1.2.3.4.3")
    index.record(third, copy_of("c.dcm", "c" * 64), arrival(T0 + timedelta(minutes=20)))
    with engine.connect() as connection:
        first, last = connection.execute(select(Study.first_received_at, Study.last_received_at)).one()
    assert (utc(first), utc(last)) == (T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
    assert count(engine, Series) == 1 and count(engine, Patient) == 1


def test_later_demographics_win_but_missing_ones_do_not_erase(engine: Engine) -> None:
    index = InstanceIndex(engine)
    index.record(HEADER, copy_of("a.dcm"), arrival(T0))
    renamed = replace(HEADER, sop_instance_uid="1.2.3.4.2", patient_name="DOE^JANE^MARIE", patient_birth_date=None)
    index.record(renamed, copy_of("b.dcm", "b" * 64), arrival(T0))
    with engine.connect() as connection:
        name, birth = connection.execute(select(Patient.patient_name, Patient.patient_birth_date)).one()
    assert (name, birth) == ("DOE^JANE^MARIE", "19700101")


def test_two_writers_on_one_database_converge(engine: Engine) -> None:
    """Two indexes (two processes' worth of memory) writing the same study: no duplicate rows."""
    first, second = InstanceIndex(engine), InstanceIndex(engine)
    first.record(HEADER, copy_of("a.dcm"), arrival(T0))
    other = replace(HEADER, sop_instance_uid="1.2.3.4.2")
    assert second.record(other, copy_of("b.dcm", "b" * 64), arrival(T0)).outcome is IndexOutcome.NEW
    assert first.record(other, copy_of("b.dcm", "b" * 64), arrival(T0)).outcome is IndexOutcome.DUPLICATE
    assert (count(engine, Study), count(engine, Series), count(engine, Instance)) == (1, 1, 2)


def test_a_failed_transaction_leaves_no_memory_behind(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    index = InstanceIndex(engine)
    from gateway.db import index as index_module

    def broken_insert(*args: object, **kwargs: object) -> object:
        raise RuntimeError("the disk is gone")

    original = index_module.record_instance

    def failing(connection, header, copy, arrival, memory=None):
        original(connection, header, copy, arrival, memory)
        broken_insert()

    monkeypatch.setattr(index_module, "record_instance", failing)
    with pytest.raises(RuntimeError):
        index.record(HEADER, copy_of("a.dcm"), arrival(T0))
    monkeypatch.undo()
    assert count(engine, Study) == 0
    # the rolled-back study is not remembered: recording again creates it properly
    assert index.record(HEADER, copy_of("a.dcm"), arrival(T0)).outcome is IndexOutcome.NEW
    assert count(engine, Study) == 1
