"""Read-only API: studies, jobs, deliveries and the dashboard, with filters and paging (viewer).

Listings answer ``{items, total, page, page_size}``, newest first; ``page_size`` is at most
500.  Each route is a thin shell over :mod:`gateway.operations.queries`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from gateway.accounts import Principal
from gateway.operations import OperationError, queries
from gateway.pipeline.states import DeliveryStatus, JobStatus
from gateway.web.auth import context_of, require
from gateway.web.context import current_settings

T = TypeVar("T")

router = APIRouter(prefix="/api/v1")

PageNumber = Annotated[int, Query(ge=1, description="which page, from 1")]
PageSize = Annotated[
    int, Query(ge=1, le=queries.MAX_PAGE_SIZE, description=f"items per page (at most {queries.MAX_PAGE_SIZE})")
]


class Page(BaseModel, Generic[T]):
    """One page of a listing; ``total`` counts every match."""

    items: list[T]
    total: int = Field(description="how many items match the filters, on every page")
    page: int
    page_size: int


def operation_error(exc: OperationError) -> HTTPException:
    """not_found -> 404, conflict -> 409, invalid -> 422, with the operation's message."""
    return HTTPException({"not_found": 404, "conflict": 409}.get(exc.kind, 422), str(exc))


def _page(found: queries.Page[T]) -> Page[T]:
    return Page[T](items=found.items, total=found.total, page=found.page, page_size=found.page_size)


@router.get("/studies", tags=["studies"], summary="Received studies, most recently received first")
def list_studies(
    request: Request,
    principal: Annotated[Principal, require("viewer")],
    state: Annotated[str | None, Query(description=f"one of: {', '.join(queries.STUDY_STATES)}")] = None,
    calling_ae: Annotated[str | None, Query(max_length=16, description="sent by this AE title")] = None,
    modality: Annotated[str | None, Query(max_length=16, description="has a series of this modality")] = None,
    received_since: Annotated[datetime | None, Query(description="last received at or after (ISO 8601)")] = None,
    received_until: Annotated[datetime | None, Query(description="last received at or before (ISO 8601)")] = None,
    q: Annotated[
        str | None, Query(max_length=128, description="part of the Study Instance UID or accession number")
    ] = None,
    page: PageNumber = 1,
    page_size: PageSize = queries.DEFAULT_PAGE_SIZE,
) -> Page[queries.StudySummary]:
    try:
        found = queries.list_studies(
            context_of(request).engine,
            state=state,
            calling_ae=calling_ae,
            modality=modality,
            received_since=received_since,
            received_until=received_until,
            text=q,
            page=page,
            page_size=page_size,
        )
    except OperationError as exc:
        raise operation_error(exc) from None
    return _page(found)


@router.get(
    "/studies/{study_instance_uid}",
    tags=["studies"],
    summary="A study: state, series, timeline, jobs, deliveries and the latest report text",
)
def study_detail(
    study_instance_uid: str, request: Request, principal: Annotated[Principal, require("viewer")]
) -> queries.StudyDetail:
    context = context_of(request)
    try:
        return queries.study_detail(context.engine, study_instance_uid, current_settings(context))
    except OperationError as exc:
        raise operation_error(exc) from None


@router.get("/jobs", tags=["jobs"], summary="Analysis jobs, newest first")
def list_jobs(
    request: Request,
    principal: Annotated[Principal, require("viewer")],
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    study_instance_uid: Annotated[str | None, Query(max_length=64, description="only jobs of this study")] = None,
    page: PageNumber = 1,
    page_size: PageSize = queries.DEFAULT_PAGE_SIZE,
) -> Page[queries.JobSummary]:
    try:
        found = queries.list_jobs(
            context_of(request).engine,
            status=status.value if status is not None else None,
            study_instance_uid=study_instance_uid,
            page=page,
            page_size=page_size,
        )
    except OperationError as exc:
        raise operation_error(exc) from None
    return _page(found)


@router.get("/jobs/{job_id}", tags=["jobs"], summary="A job with its instances, outputs and deliveries")
def job_detail(job_id: int, request: Request, principal: Annotated[Principal, require("viewer")]) -> queries.JobDetail:
    try:
        return queries.job_detail(context_of(request).engine, job_id)
    except OperationError as exc:
        raise operation_error(exc) from None


@router.get(
    "/deliveries", tags=["deliveries"], summary="Deliveries of results, newest first (status=dead: dead letters)"
)
def list_deliveries(
    request: Request,
    principal: Annotated[Principal, require("viewer")],
    status: Annotated[DeliveryStatus | None, Query(description="only deliveries in this status")] = None,
    destination: Annotated[str | None, Query(max_length=64, description="only to this destination")] = None,
    job_id: Annotated[int | None, Query(description="only of this job")] = None,
    study_instance_uid: Annotated[str | None, Query(max_length=64, description="only of this study")] = None,
    page: PageNumber = 1,
    page_size: PageSize = queries.DEFAULT_PAGE_SIZE,
) -> Page[queries.DeliverySummary]:
    try:
        found = queries.list_deliveries(
            context_of(request).engine,
            status=status.value if status is not None else None,
            destination=destination,
            job_id=job_id,
            study_instance_uid=study_instance_uid,
            page=page,
            page_size=page_size,
        )
    except OperationError as exc:
        raise operation_error(exc) from None
    return _page(found)


@router.get("/deliveries/{delivery_id}", tags=["deliveries"], summary="A delivery with each output's result")
def delivery_detail(
    delivery_id: int, request: Request, principal: Annotated[Principal, require("viewer")]
) -> queries.DeliveryDetail:
    try:
        return queries.delivery_detail(context_of(request).engine, delivery_id)
    except OperationError as exc:
        raise operation_error(exc) from None


@router.get(
    "/dashboard", tags=["dashboard"], summary="Counts by state, the queue, the last 24 hours' failures, free disk"
)
def dashboard(request: Request, principal: Annotated[Principal, require("viewer")]) -> queries.Dashboard:
    context = context_of(request)
    return queries.dashboard_counts(context.engine, current_settings(context))
