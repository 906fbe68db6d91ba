"""The ORM's tables as SQLAlchemy Core ``Table`` objects, for the pipeline's statements."""

from __future__ import annotations

from sqlalchemy import Table

from gateway.db.models import (
    Delivery,
    DeliveryItem,
    Instance,
    Job,
    JobInstance,
    Output,
    Patient,
    Series,
    Study,
    StudyState,
)

PATIENTS: Table = Patient.__table__  # type: ignore[assignment]
STUDIES: Table = Study.__table__  # type: ignore[assignment]
SERIES: Table = Series.__table__  # type: ignore[assignment]
INSTANCES: Table = Instance.__table__  # type: ignore[assignment]
STATES: Table = StudyState.__table__  # type: ignore[assignment]
JOBS: Table = Job.__table__  # type: ignore[assignment]
JOB_INSTANCES: Table = JobInstance.__table__  # type: ignore[assignment]
OUTPUTS: Table = Output.__table__  # type: ignore[assignment]
DELIVERIES: Table = Delivery.__table__  # type: ignore[assignment]
DELIVERY_ITEMS: Table = DeliveryItem.__table__  # type: ignore[assignment]
