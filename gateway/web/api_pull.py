"""Pulls over the API: ask a source PACS for studies (operator), follow them (viewer), cancel (operator).

``POST /api/v1/pulls`` records the pull and wakes the running gateway's puller, which queries
the source and retrieves each study within the rate limits; the answer (202) is the pull as
recorded.  ``GET /api/v1/pulls/{id}`` shows its counts and each study's state and last error.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from gateway.accounts import Principal
from gateway.pipeline.clock import SystemClock
from gateway.pull.ledger import PULL_STATES
from gateway.pull.listing import (
    PullDetail,
    PullRefusedError,
    PullSummary,
    cancel_pull,
    pull_summaries,
    pull_summary,
    request_pull,
)
from gateway.pull.query import PullQuery
from gateway.web.auth import context_of, require
from gateway.web.context import ApiContext, current_settings

LOGGER = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["pulls"])


class PullIn(BaseModel):
    """A pull: the source's name and what to ask it for (one of study_uid, accession, or a query)."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=64, description="a name under sources: in the configuration")
    study_uid: str | None = Field(default=None, description="one study, by its Study Instance UID")
    accession: str | None = Field(default=None, description="the study with this accession number")
    modalities: list[str] = Field(default_factory=list, description="modalities in the study, e.g. [CR, DX]")
    body_part: str | None = Field(default=None, description="Body Part Examined of a series, e.g. CHEST")
    date_from: str | None = Field(default=None, description="first study date, YYYYMMDD")
    date_to: str | None = Field(default=None, description="last study date, YYYYMMDD")


def _wake(context: ApiContext) -> None:
    puller = context.runtime.puller if context.runtime is not None else None
    if puller is not None:
        puller.wake.set()


@router.post("/pulls", status_code=202, summary="Pull studies from a source PACS (query, then retrieve each study)")
def create_pull(body: PullIn, request: Request, principal: Annotated[Principal, require("operator")]) -> PullSummary:
    context = context_of(request)
    settings = current_settings(context)
    try:
        query = PullQuery.model_validate(body.model_dump(exclude={"source"}, exclude_defaults=True))
    except ValidationError as exc:
        problems = [
            f"body.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}".replace("body.: ", "body: ") for e in exc.errors()
        ]
        raise HTTPException(422, "; ".join(problems)) from None
    try:
        pull = request_pull(
            context.engine, settings, body.source, query, actor=principal.username, now=SystemClock().now()
        )
    except PullRefusedError as exc:
        raise HTTPException(422, str(exc)) from None
    LOGGER.info("pull %d from %s (%s) requested by %s", pull.id, pull.source, pull.description, principal.username)
    if context.runtime is None or context.runtime.puller is None:
        LOGGER.warning("pull %d is queued but this process runs no puller (pull.enabled, sources)", pull.id)
    _wake(context)
    return pull


@router.get("/pulls", summary="Pulls, newest first, with their counts")
async def list_pulls(
    request: Request,
    principal: Annotated[Principal, require("viewer")],
    state: Annotated[str | None, Query(description=f"one of: {', '.join(PULL_STATES)}")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="how many")] = 50,
) -> list[PullSummary]:
    if state is not None and state not in PULL_STATES:
        raise HTTPException(422, f"state must be one of: {', '.join(PULL_STATES)}")
    return await run_in_threadpool(pull_summaries, context_of(request).engine, limit=limit, state=state)


@router.get("/pulls/{pull_id}", summary="One pull: its counts and each study's state, attempts and last error")
async def get_pull(pull_id: int, request: Request, principal: Annotated[Principal, require("viewer")]) -> PullDetail:
    found = await run_in_threadpool(pull_summary, context_of(request).engine, pull_id)
    if found is None:
        raise HTTPException(404, f"no pull {pull_id}")
    return found


@router.post("/pulls/{pull_id}/cancel", summary="Cancel a pull: studies not retrieved yet are not retrieved")
def cancel(pull_id: int, request: Request, principal: Annotated[Principal, require("operator")]) -> PullDetail:
    context = context_of(request)
    found = cancel_pull(context.engine, current_settings(context), pull_id, now=SystemClock().now())
    if found is None:
        raise HTTPException(404, f"no pull {pull_id}")
    LOGGER.info("pull %d cancelled by %s", pull_id, principal.username)
    return found
