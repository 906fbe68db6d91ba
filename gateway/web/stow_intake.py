"""STOW-RS intake: ``POST /dicomweb/studies`` and ``/dicomweb/studies/{StudyInstanceUID}`` (DICOM PS3.18 §10.5).

Who may send: a user (bearer token, or a console session with its CSRF token) listed in
``dicomweb.callers``, which maps the user name to the calling AE title its instances are recorded
with, so routing rules match a STOW-RS sender as they match a C-STORE caller; or, with mutual TLS
(``http.tls.client_ca_certificates``), a client certificate whose subject CN
``dicomweb.certificate_callers`` maps to a calling AE title.  Any role will do:
the listing is the grant, so a sending system needs no operator rights.  Unknown credentials: 401;
a user not listed: 403; the body is not read then.

Each instance takes C-STORE's path (:class:`gateway.dicom.store.InstanceStore`: fsync, rename,
index) before the response, with C-STORE's checks and statuses as Failure Reasons.  The
observers hear ``instance_stored`` / ``instance_refused`` per instance and ``association_ended``
per request, so metrics and the audit trail count STOW-RS like an association.

The body is read on the event loop and handed to worker threads a MiB at a time.  Each block is
parsed and written to the spool while the next one arrives, one block at a time and in order.  The last
block, the commits and the observers share one hop.  When the body ends early, its spool files are
deleted once no worker writes to them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.accounts import Principal
from gateway.config import Settings
from gateway.dicom.node import DicomNode
from gateway.dicom.receive import SpooledData
from gateway.dicom.store import StoreRequest, StoreResult, StoreStatus
from gateway.dicom.stow import (
    Part,
    PartOutcome,
    StowReceiver,
    StowRequestError,
    is_uid,
    request_boundary,
    store_response,
)
from gateway.events import AssociationInfo, GatewayObserver
from gateway.safelog import log_unexpected
from gateway.web.auth import client_address, context_of, require
from gateway.web.context import current_settings

LOGGER = logging.getLogger(__name__)
DICOM_JSON = "application/dicom+json"
#: Body bytes gathered before they are parsed and written in a worker thread, while the next arrive.
FEED_BYTES = 1 << 20

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])


@router.post("/studies", summary="Store instances (STOW-RS)")
async def store_instances(
    request: Request, principal: Annotated[Principal, require("viewer", certificate=True)]
) -> Response:
    return await _store(request, principal, None)


@router.post("/studies/{study_instance_uid}", summary="Store instances of one study (STOW-RS)")
async def store_study_instances(
    study_instance_uid: str, request: Request, principal: Annotated[Principal, require("viewer", certificate=True)]
) -> Response:
    if not is_uid(study_instance_uid):
        raise HTTPException(400, f"{study_instance_uid!r} is not a Study Instance UID")
    return await _store(request, principal, study_instance_uid)


def caller_ae_title(settings: Settings, username: str) -> str:
    """The calling AE title of a STOW-RS user (``cert:CN`` for a client certificate), or HTTPException
    404 (intake off) / 403 (not a caller)."""
    intake = settings.dicomweb
    if not intake.enabled:
        raise HTTPException(404, "the STOW-RS intake is off (dicomweb.enabled)")
    if username.startswith("cert:"):
        caller = intake.certificate_callers.get(username.removeprefix("cert:"))
    else:
        caller = intake.callers.get(username)
    if caller is None:
        raise HTTPException(403, f"user {username!r} may not store instances: add it to dicomweb.callers")
    return caller


async def _store(request: Request, principal: Principal, study_instance_uid: str | None) -> Response:
    context = context_of(request)
    settings = current_settings(context)
    calling = caller_ae_title(settings, principal.username)
    node = context.runtime.node if context.runtime is not None else None
    if node is None:
        raise HTTPException(503, "the DICOM store is not running")
    boundary = _boundary(request)
    dicom = settings.dicom
    receiver = StowReceiver(
        boundary, node.spool, sop_classes=dicom.sop_class_uids(), transfer_syntaxes=dicom.transfer_syntax_uids()
    )
    client = request.client
    association = AssociationInfo(
        calling_ae_title=calling,
        called_ae_title=settings.dicomweb.called_ae_title or dicom.ae_title,
        peer_address=client.host if client is not None else "",
        peer_port=client.port if client is not None else None,
    )
    in_flight: asyncio.Future[Any] | None = None
    try:
        pending: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            pending.append(chunk)
            size += len(chunk)
            if size >= FEED_BYTES:  # one hop to a worker thread per MiB, not per socket read
                if in_flight is not None:
                    await asyncio.shield(in_flight)  # in order, one at a time; a cancel leaves the worker be
                # parsed and written while the next MiB arrives
                in_flight = asyncio.ensure_future(run_in_threadpool(receiver.feed, b"".join(pending)))
                pending, size = [], 0
        if in_flight is not None:
            await asyncio.shield(in_flight)
        # shielded as well: a request cancelled while its parts commit (the client went away) must
        # not delete their spool files under the worker; the discard waits for the commits
        finishing = asyncio.ensure_future(
            run_in_threadpool(
                _finish, receiver, b"".join(pending), node, association, study_instance_uid, context.observer
            )
        )
        in_flight = finishing
        outcomes = await asyncio.shield(finishing)
    except StowRequestError as exc:
        LOGGER.warning("refused a STOW-RS request from %s at %s: %s", calling, client_address(request), exc.message)
        return JSONResponse({"detail": exc.message}, status_code=exc.status)
    finally:
        await _discard_uncommitted(receiver, in_flight)
    status, body = store_response(outcomes)
    stored = sum(outcome.stored for outcome in outcomes)
    LOGGER.info(
        "STOW-RS from %s (user %s) at %s: %d stored, %d refused",
        calling,
        principal.username,
        association.peer_address,
        stored,
        len(outcomes) - stored,
    )
    return JSONResponse(body, status_code=status, media_type=DICOM_JSON)


def _boundary(request: Request) -> bytes:
    try:
        return request_boundary(request.headers.get("content-type"))
    except StowRequestError as exc:
        raise HTTPException(exc.status, exc.message) from None


async def _discard_uncommitted(receiver: StowReceiver, feed: asyncio.Future[Any] | None) -> None:
    """Delete the spool files not committed, once no worker writes to them: when the body ended early
    (the client went away, too large, malformed) a block may still be being parsed."""
    if feed is not None and not feed.done():
        try:
            await asyncio.wait([feed])
        except asyncio.CancelledError:
            feed.add_done_callback(lambda _: _discard_after(feed, receiver))
            raise
    if feed is not None:
        _discard_after(feed, receiver)
    else:
        receiver.discard()


def _discard_after(feed: asyncio.Future[Any], receiver: StowReceiver) -> None:
    if not feed.cancelled():
        feed.exception()  # retrieved (it was awaited, or the request failed for another reason first)
    receiver.discard()


def _finish(
    receiver: StowReceiver,
    last: bytes,
    node: DicomNode,
    association: AssociationInfo,
    study_instance_uid: str | None,
    observer: GatewayObserver,
) -> list[PartOutcome]:
    """The body's last bytes, then every part committed: one hop to a worker thread."""
    if last:
        receiver.feed(last)
    return _store_parts(node, receiver.finish(), association, study_instance_uid, observer)


def _store_parts(
    node: DicomNode,
    parts: list[Part],
    association: AssociationInfo,
    study_instance_uid: str | None,
    observer: GatewayObserver,
) -> list[PartOutcome]:
    """Commit each received part through the node's store (as a C-STORE would be), in order; tell the observers."""
    outcomes = []
    received = []
    for part in parts:
        result = _store_part(node, part, association, study_instance_uid)
        outcomes.append(PartOutcome(part.meta, result))
        if result.status == StoreStatus.SUCCESS and result.instance is not None:
            received.append(result.instance)
            observer.instance_stored(association, result.instance)
        else:
            observer.instance_refused(association, int(result.status))
            LOGGER.warning("STOW-RS: refused with 0x%04X: %s", int(result.status), result.reason)
    observer.association_ended(association, received)
    return outcomes


def _store_part(
    node: DicomNode, part: Part, association: AssociationInfo, study_instance_uid: str | None
) -> StoreResult:
    if part.failure is not None:
        return part.failure
    meta, incoming = part.meta, part.incoming
    if meta is None or incoming is None:  # not reachable: a part without a failure has both
        return StoreResult(StoreStatus.PROCESSING_FAILURE, reason=f"part {part.number}: not received")
    request = StoreRequest(
        sop_class_uid=meta.sop_class_uid,
        sop_instance_uid=meta.sop_instance_uid,
        transfer_syntax_uid=meta.transfer_syntax_uid,
        calling_ae_title=association.calling_ae_title,
        called_ae_title=association.called_ae_title,
        peer_address=association.peer_address or None,
        expected_study_instance_uid=study_instance_uid,
    )
    spooled = SpooledData(incoming=incoming)
    with node.store_gate() as gate:
        if not gate.admitted:
            spooled.discard()
            return StoreResult(StoreStatus.OUT_OF_RESOURCES, reason="the node is shutting down")
        try:
            return node.store.store(request, spooled)
        except Exception as exc:  # noqa: BLE001 - as handle_store: this instance fails, the request goes on
            log_unexpected(LOGGER, "storing a STOW-RS instance failed; answered 0xC211", exc)
            spooled.discard()
            return StoreResult(StoreStatus.PROCESSING_FAILURE, reason=f"unexpected {type(exc).__name__}")
