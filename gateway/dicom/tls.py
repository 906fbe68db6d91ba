"""TLS contexts for DICOM TLS (PS3.15 Annex B): TLS 1.2 or newer, optional mutual TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

from gateway.config.settings import TLSSettings


class TLSConfigError(Exception):
    """A certificate or key cannot be used; the message names the file and the reason."""


def _minimum(version: str) -> ssl.TLSVersion:
    return ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2


def server_context(settings: TLSSettings) -> ssl.SSLContext:
    """The server side: our certificate; the caller's too when ``require_client_certificate``."""
    if settings.certificate is None or settings.private_key is None:
        raise TLSConfigError("TLS needs tls.certificate and tls.private_key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _minimum(settings.minimum_version)
    try:
        context.load_cert_chain(certfile=settings.certificate, keyfile=settings.private_key)
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(
            f"cannot load the certificate {settings.certificate} with the key {settings.private_key}: {exc}"
        ) from None
    if settings.ca_certificates is not None:
        try:
            context.load_verify_locations(cafile=settings.ca_certificates)
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(f"cannot load the CA certificates {settings.ca_certificates}: {exc}") from None
    context.verify_mode = ssl.CERT_REQUIRED if settings.require_client_certificate else ssl.CERT_NONE
    return context


def client_context(
    *,
    ca_certificates: Path | None = None,
    certificate: Path | None = None,
    private_key: Path | None = None,
    verify: bool = True,
    minimum_version: str = "1.2",
) -> ssl.SSLContext:
    """The client side (``gazex echo --tls``): verify the server's chain, optionally present ours.

    Host names are not checked, as in dcmtk: DICOM peers are configured by address and AE title.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = _minimum(minimum_version)
    context.check_hostname = False
    if verify:
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            if ca_certificates is not None:
                context.load_verify_locations(cafile=ca_certificates)
            else:
                context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(f"cannot load the CA certificates {ca_certificates}: {exc}") from None
    else:
        context.verify_mode = ssl.CERT_NONE
    if certificate is not None:
        try:
            context.load_cert_chain(certfile=certificate, keyfile=private_key)
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(f"cannot load the client certificate {certificate}: {exc}") from None
    return context
