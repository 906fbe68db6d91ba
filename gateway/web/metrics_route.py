"""``/metrics``: the Prometheus exposition of the running gateway (a viewer's token, or public by setting)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from gateway.accounts import Principal
from gateway.metrics import render
from gateway.web.auth import context_of, require
from gateway.web.context import ApiContext

router = APIRouter(tags=["metrics"])


def _public(context: ApiContext) -> bool:
    return context.settings.http.metrics_public


@router.get("/metrics", summary="Prometheus metrics (a viewer's token, unless http.metrics_public)")
async def metrics(request: Request, principal: Annotated[Principal, require("viewer", _public)]) -> Response:
    runtime = context_of(request).runtime
    if runtime is None or runtime.metrics is None:
        raise HTTPException(503, "no metrics in this process")
    body, content_type = await run_in_threadpool(render, runtime.metrics)
    return Response(body, media_type=content_type)
