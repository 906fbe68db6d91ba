"""A C-ECHO SCU, so IT can test connectivity (``gazex echo``)."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

#: A-ASSOCIATE-RJ reasons, by (source, diagnostic) (PS3.8 Table 9-21).
_REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given (ACSE)",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded (too many associations)",
}


@dataclass(frozen=True)
class EchoResult:
    ok: bool
    message: str
    seconds: float
    status: int | None = None


def echo(
    host: str,
    port: int,
    called_ae_title: str,
    *,
    calling_ae_title: str = "GAZEX",
    timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
) -> EchoResult:
    """Associate, send one C-ECHO, release; the result says what happened in words."""
    ae = AE(ae_title=calling_ae_title)
    ae.add_requested_context(Verification)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    started = time.monotonic()
    assoc = ae.associate(host, port, ae_title=called_ae_title, tls_args=(tls, "") if tls is not None else None)
    elapsed = time.monotonic() - started
    if assoc.is_rejected:
        primitive = assoc.acceptor.primitive
        result = getattr(primitive, "result", None)
        source = getattr(primitive, "result_source", None)
        diagnostic = getattr(primitive, "diagnostic", None)
        kind = "permanently" if result == 1 else "transiently"
        reason = _REJECT_REASONS.get((int(source or 0), int(diagnostic or 0)), f"source {source}, reason {diagnostic}")
        return EchoResult(False, f"association rejected {kind}: {reason}", elapsed)
    if assoc.is_aborted:
        return EchoResult(False, "association aborted by the peer (is it a DICOM TLS port, or did TLS fail?)", elapsed)
    if not assoc.is_established:
        return EchoResult(
            False, f"no association with {host}:{port} (connection refused, timed out or TLS handshake failed)", elapsed
        )
    try:
        status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    elapsed = time.monotonic() - started
    if status is None or "Status" not in status:
        return EchoResult(False, "no C-ECHO response (DIMSE timeout or the association ended)", elapsed)
    code = int(status.Status)
    if code == 0:
        return EchoResult(True, "success", elapsed, code)
    return EchoResult(False, f"C-ECHO failed with status 0x{code:04X}", elapsed, code)
