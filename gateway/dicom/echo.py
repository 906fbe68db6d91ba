"""A C-ECHO SCU, so IT can test connectivity (``gazex echo``)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

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


#: How long ``preflight`` waits for a TLS alert after the handshake.
TLS_ALERT_WAIT = 0.5

#: An association request that took at least this share of the ACSE timeout met the timeout.
TIMEOUT_MARGIN = 0.95


def preflight(host: str, port: int, *, timeout: float, tls: ssl.SSLContext | None) -> str | None:
    """Why a connection (and TLS handshake) to host:port fails, in words; None when it works.

    pynetdicom reports every transport failure as an abort, so the causes IT needs (refused,
    timed out, unknown host, certificate not trusted) are found with a plain connection first.
    """
    try:
        connection = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror}"
    except TimeoutError:
        return f"cannot connect to {host}:{port}: timed out after {timeout:g} s"
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"
    try:
        if tls is not None:
            try:
                with tls.wrap_socket(connection, server_hostname=host) as secured:
                    # TLS 1.3 reports a refused client certificate only after the handshake: wait
                    # briefly for that alert (a DICOM server that accepted us sends nothing first)
                    secured.settimeout(TLS_ALERT_WAIT)
                    with contextlib.suppress(TimeoutError):
                        secured.recv(1)
            except ssl.SSLError as exc:
                return f"TLS handshake with {host}:{port} failed: {exc.reason or exc}"
            except OSError as exc:
                return f"TLS handshake with {host}:{port} failed: {exc.strerror or exc}"
    finally:
        connection.close()
    return None


def _association_failure(assoc: Any, *, waited: float | None = None, timeout: float | None = None) -> str | None:
    """Why no association was established, in words; None when it was.

    pynetdicom ends an association request that met its ACSE timeout with an abort, as if the
    peer had aborted; ``waited`` (how long the request took) and ``timeout`` (the ACSE timeout)
    tell the two apart.
    """
    if assoc.is_rejected:
        primitive = assoc.acceptor.primitive
        result = getattr(primitive, "result", None)
        source = getattr(primitive, "result_source", None)
        diagnostic = getattr(primitive, "diagnostic", None)
        kind = "permanently" if result == 1 else "transiently"
        reason = _REJECT_REASONS.get((int(source or 0), int(diagnostic or 0)), f"source {source}, reason {diagnostic}")
        return f"association rejected {kind}: {reason}"
    if timeout is not None and waited is not None and waited >= timeout * TIMEOUT_MARGIN and not assoc.is_established:
        return (
            f"timed out: no answer to the association request within {timeout:g} s (the peer accepted the "
            "connection but sent nothing; is it a DICOM node, and is it overloaded?)"
        )
    if assoc.is_aborted:
        return "association aborted by the peer (a TLS port spoken to without --tls, or TLS refused us?)"
    if not assoc.is_established:
        return "no association (the peer did not answer the association request in time)"
    return None


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
    started = time.monotonic()
    problem = preflight(host, port, timeout=timeout, tls=tls)
    if problem is not None:
        return EchoResult(False, problem, time.monotonic() - started)
    started = time.monotonic()  # the round trip reported is the association's, not the pre-flight's
    ae = AE(ae_title=calling_ae_title)
    ae.add_requested_context(Verification)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    assoc = ae.associate(host, port, ae_title=called_ae_title, tls_args=(tls, host) if tls is not None else None)
    elapsed = time.monotonic() - started
    failure = _association_failure(assoc, waited=elapsed, timeout=timeout)
    if failure is not None:
        return EchoResult(False, failure, elapsed)
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
