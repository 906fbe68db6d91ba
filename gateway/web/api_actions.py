"""Operators' actions (operator): C-ECHO a destination, retry a delivery, reprocess a study,
cancel a queued job; and testing the routing rules (viewer: it changes nothing).

Each is a thin shell over :mod:`gateway.operations.actions`, which checks the target and logs
who did what (no patient data).  A refused action answers 404, 409 or 422 and changes nothing.
"""

from __future__ import annotations

import io
import json
from typing import Annotated, Any

import pydicom
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydicom.errors import InvalidDicomError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from gateway.accounts import Principal
from gateway.operations import OperationError, actions, queries
from gateway.web.api_status import operation_error
from gateway.web.auth import CSRF_FIELD, context_of, require
from gateway.web.context import ApiContext, current_settings

router = APIRouter(prefix="/api/v1")


def _wake(context: ApiContext, what: str) -> None:
    """Tell this process's pipeline (if it runs one) that work is due now, not at its next poll."""
    pipeline = context.runtime.pipeline if context.runtime is not None else None
    if pipeline is not None:
        getattr(pipeline, what).set()


@router.post(
    "/destinations/{name}/echo", tags=["destinations"], summary="C-ECHO a destination (a DICOMweb one: an HTTP check)"
)
def echo_destination(
    name: str, request: Request, principal: Annotated[Principal, require("operator")]
) -> actions.EchoOutcome:
    try:
        return actions.echo_destination(current_settings(context_of(request)), name, actor=principal.username)
    except OperationError as exc:
        raise operation_error(exc) from None


@router.post(
    "/deliveries/{delivery_id}/retry",
    tags=["deliveries"],
    summary="Retry a dead (or failed, waiting) delivery now; acknowledged outputs are not sent again",
)
def retry_delivery(
    delivery_id: int, request: Request, principal: Annotated[Principal, require("operator")]
) -> queries.DeliverySummary:
    context = context_of(request)
    try:
        found = actions.retry_delivery(context.engine, delivery_id, actor=principal.username)
    except OperationError as exc:
        raise operation_error(exc) from None
    _wake(context, "deliveries_waiting")
    return found


@router.post(
    "/studies/{study_instance_uid}/reprocess",
    tags=["studies"],
    status_code=202,
    summary="Route a study again and queue a new analysis that supersedes the earlier one",
)
def reprocess_study(
    study_instance_uid: str, request: Request, principal: Annotated[Principal, require("operator")]
) -> actions.ReprocessOutcome:
    context = context_of(request)
    try:
        return actions.reprocess_study(
            context.engine,
            current_settings(context),
            study_instance_uid,
            actor=principal.username,
            on_job_queued=lambda: _wake(context, "jobs_waiting"),
        )
    except OperationError as exc:
        raise operation_error(exc) from None


@router.post("/jobs/{job_id}/cancel", tags=["jobs"], summary="Cancel a queued job (no worker takes it afterwards)")
def cancel_job(
    job_id: int, request: Request, principal: Annotated[Principal, require("operator")]
) -> queries.JobSummary:
    try:
        return actions.cancel_job(context_of(request).engine, job_id, actor=principal.username)
    except OperationError as exc:
        raise operation_error(exc) from None


class RulesTestIn(BaseModel):
    """Test the rules against a received study."""

    model_config = ConfigDict(extra="forbid")
    study_instance_uid: str = Field(min_length=1, max_length=64, description="a received study's UID")


_UPLOAD_FIELDS = frozenset({"file", "calling_ae", "called_ae", CSRF_FIELD})
_RULES_TEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": RulesTestIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "a DICOM file (Part 10)"},
                        "calling_ae": {"type": "string", "description": "as if sent by this AE title"},
                        "called_ae": {"type": "string", "description": "as if sent to this AE title of ours"},
                    },
                }
            },
        },
    }
}


@router.post(
    "/rules/test",
    tags=["rules"],
    summary="Which rule takes a received study or an uploaded DICOM file, and where its results would go",
    openapi_extra=_RULES_TEST_BODY,
)
async def test_rules(request: Request, principal: Annotated[Principal, require("viewer")]) -> actions.RulesTest:
    context = context_of(request)
    settings = current_settings(context)
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            dataset, calling, called = await _uploaded(request)
            return await run_in_threadpool(
                actions.test_rules, settings, dataset=dataset, calling_ae=calling, called_ae=called
            )
        if content_type.split(";")[0].strip() == "application/json":
            body = _json_body(await request.body())
            return await run_in_threadpool(
                actions.test_rules, settings, db=context.engine, study_instance_uid=body.study_instance_uid
            )
    except OperationError as exc:
        raise operation_error(exc) from None
    raise HTTPException(415, "send JSON {\"study_instance_uid\": ...} or a multipart/form-data upload in 'file'")


def _json_body(raw: bytes) -> RulesTestIn:
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(422, f"the body is not valid JSON: {exc}") from None
    try:
        return RulesTestIn.model_validate(document)
    except ValidationError as exc:
        problems = [f"body.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}".rstrip(".:") for e in exc.errors()]
        raise HTTPException(422, "; ".join(problems)) from None


async def _uploaded(request: Request) -> tuple[pydicom.Dataset, str | None, str | None]:
    form = await request.form()
    unknown = sorted(set(form.keys()) - _UPLOAD_FIELDS)
    if unknown:
        raise HTTPException(422, f"unknown form field(s): {', '.join(unknown)}; send file, calling_ae, called_ae")
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(422, "send the DICOM file in the form field 'file'")
    data = await upload.read()
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise HTTPException(
            422, f"the upload is not a DICOM file with a Part 10 header ({type(exc).__name__}); send a .dcm file"
        ) from None

    def text(name: str) -> str | None:
        value = form.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not 0 < len(value.strip()) <= 16:
            raise HTTPException(422, f"{name} must be an AE title of 1 to 16 characters")
        return value.strip()

    return dataset, text("calling_ae"), text("called_ae")
