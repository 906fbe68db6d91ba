"""Settings of the operations side: the HTTP server (API, console, metrics) and the audit trail."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ByteSize, ConfigDict, Field, FilePath, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpTLSSettings(_Section):
    """HTTPS for the API and console: our certificate and key (PEM)."""

    certificate: FilePath | None = Field(default=None, description="PEM file with our certificate (chain)")
    private_key: FilePath | None = Field(default=None, description="PEM file with the certificate's private key")
    client_ca_certificates: FilePath | None = Field(
        default=None,
        description="PEM file of CAs that sign clients' certificates: the server then asks for one (optional); "
        "a STOW-RS sender may authenticate with it (dicomweb.certificate_callers)",
    )

    @property
    def enabled(self) -> bool:
        return self.certificate is not None and self.private_key is not None

    @model_validator(mode="after")
    def _pair(self) -> HttpTLSSettings:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("http.tls.certificate and http.tls.private_key must be set together (or neither)")
        if self.client_ca_certificates is not None and self.certificate is None:
            raise ValueError("http.tls.client_ca_certificates needs HTTPS: set http.tls.certificate and private_key")
        return self


class HttpSettings(_Section):
    """The HTTP server of ``gazex serve``: REST API (/api/v1), web console, /healthz, /readyz, /metrics."""

    enabled: bool = Field(default=True, description="serve the API, console and metrics")
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port; 0 picks a free one (logged)")
    tls: HttpTLSSettings = Field(default_factory=HttpTLSSettings)
    allow_insecure_remote: bool = Field(
        default=False,
        description="allow plain HTTP on an address beyond loopback (behind a TLS-terminating proxy); "
        "without it, gazex serve refuses to start so",
    )
    session_minutes: int = Field(default=480, ge=1, description="a console login lasts this long")
    max_upload_bytes: ByteSize = Field(
        default=ByteSize(64 << 20), description="largest request body (an uploaded DICOM file) accepted"
    )
    metrics_public: bool = Field(
        default=False, description="serve /metrics without a login (for a Prometheus scraper on a trusted network)"
    )

    @property
    def loopback_only(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"

    @model_validator(mode="after")
    def _secure(self) -> HttpSettings:
        if self.enabled and not self.loopback_only and not self.tls.enabled and not self.allow_insecure_remote:
            raise ValueError(
                f"http.host {self.host!r} exposes the console beyond loopback without TLS: set http.tls.certificate "
                "and http.tls.private_key, or http.allow_insecure_remote: true behind a TLS-terminating proxy"
            )
        return self


class SyslogSettings(_Section):
    """An audit record collector: RFC 5424 messages over TLS (RFC 5425) or plain TCP (RFC 6587)."""

    enabled: bool = Field(default=False, description="send every audit message to the collector too")
    host: str | None = Field(default=None, description="the collector's host name or address")
    port: int = Field(default=6514, ge=1, le=65535, description="TCP port (6514: syslog over TLS)")
    tls: bool = Field(default=True, description="TLS to the collector (RFC 5425)")
    ca_certificates: FilePath | None = Field(
        default=None, description="PEM CA file that signs the collector's certificate; null: the system's"
    )
    certificate: FilePath | None = Field(default=None, description="our client certificate (PEM), for mutual TLS")
    private_key: FilePath | None = Field(default=None, description="our client certificate's private key (PEM)")
    app_name: str = Field(default="gazex", max_length=48, description="APP-NAME of the syslog header")

    @model_validator(mode="after")
    def _host(self) -> SyslogSettings:
        if self.enabled and not self.host:
            raise ValueError("audit.syslog.enabled is true, so audit.syslog.host must name the collector")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("audit.syslog.certificate and audit.syslog.private_key must be set together (or neither)")
        return self


class AuditSettings(_Section):
    """The audit trail (DICOM PS3.15 A.5 messages): an append-only file and optionally a syslog collector."""

    enabled: bool = Field(default=True, description="write audit messages")
    path: Path | None = Field(default=None, description="append-only audit file; null: <data_dir>/audit/audit.log")
    syslog: SyslogSettings = Field(default_factory=SyslogSettings)
    enterprise_site_id: str | None = Field(
        default=None, description="AuditEnterpriseSiteID of the audit source (the hospital); null: left out"
    )
