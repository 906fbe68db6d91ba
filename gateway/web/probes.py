"""``/healthz`` (the process answers) and ``/readyz`` (it can do its work): for load balancers and
Kubernetes probes, without a login."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from gateway.health import CheckResult, check_spool
from gateway.web.context import ApiContext

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Alive: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Ready: database, spool, outbox, DICOM port and model", response_model=None)
def readyz(request: Request) -> JSONResponse:
    context: ApiContext = request.app.state.context
    checks = readiness(context)
    ready = all(check.ok for check in checks)
    body: dict[str, Any] = {
        "status": "ready" if ready else "not ready",
        "checks": [{"name": check.name, "ok": check.ok, "detail": check.detail} for check in checks],
    }
    return JSONResponse(body, status_code=200 if ready else 503)


def readiness(context: ApiContext) -> list[CheckResult]:
    settings = context.settings
    reserve = int(settings.storage.min_free_disk)
    checks = [
        _database(context),
        check_spool(settings.storage.spool_path, reserve),
        check_spool(settings.storage.outbox_path, reserve, name="outbox"),
    ]
    runtime = context.runtime
    node = runtime.node if runtime is not None else None
    if node is None or not node.accepting:
        checks.append(CheckResult("dicom", False, "the DICOM node is not accepting associations"))
    else:
        host, port = node.address
        # not probed by connecting: a bare TCP connection would count as a refused caller
        checks.append(CheckResult("dicom", True, f"accepting associations on {host}:{port}"))
    pipeline = runtime.pipeline if runtime is not None else None
    if pipeline is None:
        checks.append(CheckResult("model", False, "no pipeline runs in this process"))
    else:
        loaded, what = pipeline.model.state()
        checks.append(CheckResult("model", loaded, what))
    return checks


def _database(context: ApiContext) -> CheckResult:
    try:
        with context.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure of the database means not ready
        return CheckResult("database", False, f"the database does not answer: {type(exc).__name__}")
    return CheckResult("database", True, "answers")
