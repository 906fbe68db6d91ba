"""Settings of pulling: the PACS the gateway queries and retrieves from (``sources``), and the
limits that keep a backfill from flooding them (``pull``).

A source is a DICOM node (C-FIND, then C-MOVE to our AE or C-GET) or a DICOMweb service
(QIDO-RS, then WADO-RS).  :mod:`gateway.pull` does the work; these are only the typed settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, FilePath, model_validator

from gateway.config.pipeline import AETitle, DestinationTLS, Section, _name


class DicomSource(Section):
    """A DICOM archive we query with C-FIND and retrieve from with C-MOVE (to our AE) or C-GET."""

    type: Literal["dicom"] = Field(default="dicom", description="dicom: C-FIND, then C-MOVE or C-GET")
    ae_title: AETitle = Field(description="the archive's AE title (called AE)")
    host: str = Field(min_length=1, description="host name or IP address")
    port: int = Field(ge=1, le=65535, description="TCP port")
    calling_ae_title: AETitle | None = Field(default=None, description="our AE title towards it; null: dicom's first")
    retrieve: Literal["move", "get"] = Field(
        default="move",
        description="move: C-MOVE to move_destination_ae (the archive must know that AE's address); "
        "get: C-GET, the instances come back on our own association",
    )
    move_destination_ae: AETitle | None = Field(
        default=None,
        description="the AE title (of ours) the archive sends C-MOVE results to; null: dicom's first. "
        "The archive must list it with our host and dicom.port, and our allowed_callers must admit the archive",
    )
    timeout_seconds: float = Field(
        default=60.0, gt=0, description="connect, association and DIMSE timeout (per response, not per study)"
    )
    tls: DestinationTLS = Field(default_factory=DestinationTLS)
    max_concurrent_retrieves: int | None = Field(
        default=None, ge=1, description="retrieves from this source at once; null: pull.max_concurrent_retrieves"
    )
    max_studies_per_hour: int | None = Field(
        default=None, ge=1, description="studies retrieved from it per hour; null: pull.max_studies_per_hour"
    )


class DicomwebAuth(Section):
    """How we authenticate to a DICOMweb service."""

    type: Literal["none", "basic", "bearer"] = Field(default="none", description="none, basic or bearer")
    username: str | None = Field(default=None, description="basic: the user name")
    password_file: FilePath | None = Field(default=None, description="basic: a file holding the password")
    token_file: FilePath | None = Field(default=None, description="bearer: a file holding the token (read per pull)")

    @model_validator(mode="after")
    def _complete(self) -> DicomwebAuth:
        if self.type == "basic" and (not self.username or self.password_file is None):
            raise ValueError("auth.type basic needs auth.username and auth.password_file")
        if self.type == "bearer" and self.token_file is None:
            raise ValueError("auth.type bearer needs auth.token_file (a file holding the token)")
        return self


class DicomwebSource(Section):
    """A DICOMweb service we query with QIDO-RS and retrieve from with WADO-RS."""

    type: Literal["dicomweb"] = Field(description="dicomweb: QIDO-RS, then WADO-RS")
    base_url: str = Field(
        pattern=r"^https?://",
        description="the service root that /studies hangs under, e.g. https://pacs.example/dicom-web",
    )
    auth: DicomwebAuth = Field(default_factory=DicomwebAuth)
    verify_tls: bool = Field(default=True, description="check the service's certificate (https)")
    ca_certificates: FilePath | None = Field(
        default=None, description="PEM file of CAs that sign the service's certificate; null: the system's"
    )
    timeout_seconds: float = Field(default=60.0, gt=0, description="connect and read timeout of each request")
    caller_name: AETitle | None = Field(
        default=None,
        description="what routing rules see as the calling AE of the instances retrieved; null: the source's name",
    )
    max_concurrent_retrieves: int | None = Field(
        default=None, ge=1, description="retrieves from this source at once; null: pull.max_concurrent_retrieves"
    )
    max_studies_per_hour: int | None = Field(
        default=None, ge=1, description="studies retrieved from it per hour; null: pull.max_studies_per_hour"
    )


def _default_type(value: Any) -> Any:
    """A source without ``type`` is a DICOM one."""
    if isinstance(value, dict) and "type" not in value:
        return {**value, "type": "dicom"}
    return value


Source = Annotated[DicomSource | DicomwebSource, Field(discriminator="type"), BeforeValidator(_default_type)]


def _source_names(value: dict[str, DicomSource | DicomwebSource]) -> dict[str, DicomSource | DicomwebSource]:
    for name in value:
        _name(name)
    return value


SourceMap = Annotated[dict[str, Source], AfterValidator(_source_names)]


class PullSettings(Section):
    """Pulling studies from the sources: limits, retries and the background puller of ``gazex serve``."""

    enabled: bool = Field(default=True, description="gazex serve runs queued pulls (and resumes interrupted ones)")
    max_concurrent_retrieves: int = Field(default=2, ge=1, description="studies retrieved at once, over all sources")
    max_studies_per_hour: int = Field(
        default=360, ge=1, description="studies retrieved per source in any sliding hour (kept in the database)"
    )
    max_attempts: int = Field(default=5, ge=1, description="a query or a study's retrieve is tried this many times")
    base_delay_seconds: float = Field(default=30.0, ge=0, description="wait before the first retry")
    factor: float = Field(default=2.0, ge=1, description="each retry waits this many times longer")
    max_delay_seconds: float = Field(default=1800.0, ge=0, description="no retry waits longer")
    lease_seconds: float = Field(
        default=600.0, gt=0, description="a retrieve in progress whose process died is taken up again after this"
    )
    poll_seconds: float = Field(default=2.0, gt=0, description="how often an idle puller looks for work")
    max_studies_per_pull: int = Field(
        default=10_000, ge=1, description="a query finding more studies than this fails (narrow the date range)"
    )

    @model_validator(mode="after")
    def _order(self) -> PullSettings:
        if self.max_delay_seconds < self.base_delay_seconds:
            raise ValueError("max_delay_seconds must be at least base_delay_seconds")
        return self


def secret(path: Path) -> str:
    """The first line of a secret file (a password or token), without surrounding white space."""
    return path.read_text(encoding="utf-8").strip()
