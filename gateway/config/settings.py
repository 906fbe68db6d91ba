"""The gateway's typed settings: one root object with one section per concern.

Every model forbids unknown keys, so a misspelt key stops start-up and names itself.  The
root is a pydantic-settings ``BaseSettings``; :func:`gateway.config.load_settings` layers the
YAML file, ``GAZEX_*`` environment variables and command-line flags on top of the defaults
below.  The sections after ingest (``model``, ``routing``, ``destinations``, ``completion``,
``worker``, ``delivery``, ``retention``) are defined in :mod:`gateway.config.pipeline`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ByteSize, ConfigDict, Field, FilePath, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydicom.uid import UID

from gateway.config.operations import AuditSettings, HttpSettings
from gateway.config.pipeline import (
    AnyDestination,
    CompletionSettings,
    DeliverySettings,
    ModelSettings,
    RetentionSettings,
    RoutingSettings,
    WorkerSettings,
    _destination_names,
)
from gateway.config.sources import PullSettings, SourceMap
from gateway.dicom.contexts import (
    ALL_STORAGE,
    ALL_TRANSFER_SYNTAXES_KEYWORD,
    resolve_storage_sop_class,
    resolve_transfer_syntax,
)

#: The AE title default, the port default and where data lives by default.
DEFAULT_AE_TITLE = "GAZEX"
DEFAULT_PORT = 11112
DEFAULT_DATA_DIR = Path("var")

_AE_TITLE_CHARS = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII except backslash


def _ae_title(value: str) -> str:
    """An AE title: 1-16 printable ASCII characters, no backslash; surrounding spaces are not significant."""
    if not _AE_TITLE_CHARS.match(value) or not value.strip():
        raise ValueError("must be 1 to 16 printable ASCII characters, not only spaces, and no backslash")
    return value.strip()


AETitle = Annotated[str, AfterValidator(_ae_title)]


def _caller_ae_title(value: str) -> str:
    return "*" if value.strip() == "*" else _ae_title(value)


def _caller_host(value: str | None) -> str | None:
    """An IP address, a CIDR network or a host name (resolved when a caller connects)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        raise ValueError("must be an IP address, a CIDR network such as 10.0.0.0/24, or a host name; omit it for any")
    try:
        return str(ipaddress.ip_network(text, strict=False)) if "/" in text else str(ipaddress.ip_address(text))
    except ValueError:
        if "/" in text:
            raise ValueError(f"{text!r} is not a valid CIDR network (for example 10.0.0.0/24)") from None
    if not re.match(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$", text):
        raise ValueError(f"{text!r} is neither an IP address, a CIDR network nor a valid host name")
    return text


def _uid_root(value: str | None) -> str | None:
    if value is None:
        return None
    from dicom_sr import check_uid_root  # here: loading settings must not import highdicom

    return check_uid_root(value.strip())


def _max_pdu_size(value: int) -> int:
    if value != 0 and not 4096 <= value <= 2**32 - 1:
        raise ValueError(f"max_pdu_size must be 0 (no limit) or from 4096 to {2**32 - 1}")
    return value


def _distinct_titles(titles: list[str]) -> list[str]:
    if len(set(titles)) != len(titles):
        raise ValueError("must not repeat a title")
    return titles


def _sop_classes(value: str | list[str]) -> str | list[str]:
    if isinstance(value, str):
        if value != ALL_STORAGE:
            raise ValueError(f"must be {ALL_STORAGE!r} or a list of storage SOP Class UIDs or keywords")
        return value
    if not value:
        raise ValueError(f"must not be empty; use {ALL_STORAGE!r} for every storage SOP class")
    return [resolve_storage_sop_class(item) for item in value]


def _transfer_syntaxes(value: str | list[str]) -> str | list[str]:
    if isinstance(value, str):
        if value != ALL_TRANSFER_SYNTAXES_KEYWORD:
            raise ValueError(f"must be {ALL_TRANSFER_SYNTAXES_KEYWORD!r} or a list of transfer syntax UIDs or keywords")
        return value
    if not value:
        raise ValueError(f"must not be empty; use {ALL_TRANSFER_SYNTAXES_KEYWORD!r} for every transfer syntax")
    return [resolve_transfer_syntax(item) for item in value]


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AllowedCaller(Section):
    """One caller IT allows: a calling AE title, optionally tied to a host, IP address or CIDR network."""

    ae_title: Annotated[str, AfterValidator(_caller_ae_title)] = Field(
        description="the caller's AE title; '*' matches any AE title"
    )
    host: Annotated[str | None, AfterValidator(_caller_host)] = Field(
        default=None, description="IP address, CIDR network or host name the caller must connect from; null: any"
    )


def _loopback_callers() -> list[AllowedCaller]:
    return [AllowedCaller(ae_title="*", host="127.0.0.0/8"), AllowedCaller(ae_title="*", host="::1")]


class Timeouts(Section):
    """DICOM timeouts in seconds; null waits forever."""

    acse: float | None = Field(default=30.0, gt=0, description="association negotiation and release")
    dimse: float | None = Field(default=60.0, gt=0, description="waiting for a DIMSE message")
    network: float | None = Field(
        default=120.0,
        gt=0,
        description="an association with no traffic is aborted; also the longest wait for the rest of a PDU",
    )
    admission: float = Field(
        default=10.0,
        gt=0,
        description="a connection not admitted this long after it was accepted (TLS handshake and association "
        "request included) is closed; the shorter of this and acse applies",
    )


class TLSSettings(Section):
    """DICOM TLS on the listening port (PS3.15 Annex B): our certificate, optionally the caller's."""

    enabled: bool = Field(default=False, description="speak TLS on the DICOM port")
    certificate: FilePath | None = Field(default=None, description="PEM file with our certificate (chain)")
    private_key: FilePath | None = Field(default=None, description="PEM file with the certificate's private key")
    ca_certificates: FilePath | None = Field(
        default=None, description="PEM file of CA certificates that sign callers' certificates"
    )
    require_client_certificate: bool = Field(
        default=False, description="mutual TLS: refuse callers without a certificate signed by ca_certificates"
    )
    minimum_version: Literal["1.2", "1.3"] = Field(default="1.2", description="oldest TLS version accepted")

    @model_validator(mode="after")
    def _complete(self) -> TLSSettings:
        if self.enabled and (self.certificate is None or self.private_key is None):
            raise ValueError("tls.enabled is true, so tls.certificate and tls.private_key must both be set")
        if self.require_client_certificate and self.ca_certificates is None:
            raise ValueError(
                "tls.require_client_certificate is true, so tls.ca_certificates must name the CA file "
                "that signs the callers' certificates"
            )
        return self


class DicomSettings(Section):
    """The DICOM node: who we are, who may call, and what we accept."""

    ae_titles: Annotated[list[AETitle], AfterValidator(_distinct_titles)] = Field(
        default_factory=lambda: [DEFAULT_AE_TITLE],
        min_length=1,
        description="our AE title(s); the first is the main one",
    )
    uid_root: Annotated[str | None, AfterValidator(_uid_root)] = Field(
        default=None,
        description="the site's own UID root for the UIDs of our outputs (<root>.<digits>, at most 64 "
        "characters); null: 2.25.<UUID-derived> UIDs",
    )
    host: str = Field(default="0.0.0.0", description="address to listen on")  # noqa: S104 - a DICOM node listens
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535, description="TCP port to listen on")
    require_called_ae_title: bool = Field(
        default=True, description="reject associations whose called AE title is not one of ae_titles"
    )
    reject_unknown_callers: bool = Field(default=True, description="reject callers that match no allowed_callers entry")
    allowed_callers: list[AllowedCaller] = Field(
        default_factory=_loopback_callers, description="callers IT allows (AE title + optional host/IP/CIDR)"
    )
    max_associations: int = Field(
        default=10, ge=1, description="concurrent associations; beyond it: rejected (transient)"
    )
    max_pending_connections: int = Field(
        default=64, ge=1, description="connections not yet admitted (no association request decided), in total"
    )
    max_pending_per_address: int = Field(
        default=8, ge=1, description="connections not yet admitted from one IP address"
    )
    max_pdu_size: Annotated[int, AfterValidator(_max_pdu_size)] = Field(
        default=1_048_576, description="largest PDU we accept, in bytes; 0 means no limit"
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)
    sop_classes: Annotated[str | list[str], AfterValidator(_sop_classes)] = Field(
        default=ALL_STORAGE, description="accepted storage SOP classes"
    )
    transfer_syntaxes: Annotated[str | list[str], AfterValidator(_transfer_syntaxes)] = Field(
        default=ALL_TRANSFER_SYNTAXES_KEYWORD,
        description="accepted transfer syntaxes; instances are stored as received",
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, description="on SIGTERM, how long open associations may go on before they are aborted"
    )
    tls: TLSSettings = Field(default_factory=TLSSettings)

    @property
    def ae_title(self) -> str:
        """The main AE title (the first of ``ae_titles``)."""
        return self.ae_titles[0]

    def sop_class_uids(self) -> list[UID]:
        from gateway.dicom.contexts import storage_sop_classes

        return storage_sop_classes(self.sop_classes)

    def transfer_syntax_uids(self) -> list[UID]:
        from gateway.dicom.contexts import transfer_syntaxes

        return transfer_syntaxes(self.transfer_syntaxes)


#: A user name of gateway.accounts (kept in step with its rule; accounts is not imported by the settings).
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def _stow_callers(callers: dict[str, str]) -> dict[str, str]:
    for username in callers:
        if not _USERNAME.match(username):
            raise ValueError(f"{username!r} is not a user name (1-64 letters, digits or . _ @ -)")
    return {username: _ae_title(ae_title) for username, ae_title in callers.items()}


def _certificate_callers(callers: dict[str, str]) -> dict[str, str]:
    for name in callers:
        if not name.strip() or len(name) > 64 or not name.isprintable():
            raise ValueError(f"{name!r} is not a certificate common name (1-64 printable characters)")
    return callers


class DicomwebSettings(Section):
    """The STOW-RS intake (POST /dicomweb/studies on the HTTP server): who may send, as which caller."""

    enabled: bool = Field(default=False, description="accept instances by STOW-RS on the HTTP server")
    callers: Annotated[dict[str, str], AfterValidator(_stow_callers)] = Field(
        default_factory=dict,
        description="user name -> the calling AE title its instances are recorded with (routing rules match it "
        "as calling_ae); a user not listed gets 403",
    )
    certificate_callers: Annotated[dict[str, AETitle], AfterValidator(_certificate_callers)] = Field(
        default_factory=dict,
        description="client certificate subject CN -> calling AE title: mutual TLS instead of a token "
        "(needs http.tls.client_ca_certificates)",
    )
    called_ae_title: AETitle | None = Field(
        default=None, description="the called AE title recorded for instances received so; null: dicom.ae_title"
    )


class StorageSettings(Section):
    """Where received instances and the embedded database live."""

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="root of the gateway's data")
    spool_dir: Path | None = Field(default=None, description="received instances; null: <data_dir>/spool")
    outbox_dir: Path | None = Field(
        default=None, description="results waiting to be delivered; null: <data_dir>/outbox"
    )
    node_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="this node's name on a spool shared by several gazex serve (its own lock and incoming "
        "folder); null: the spool belongs to this node alone",
    )
    min_free_disk: ByteSize = Field(
        default=ByteSize(1 << 30),
        description="free-disk reserve: below it, C-STORE is refused with 0xA700 before anything is written",
    )

    @property
    def spool_path(self) -> Path:
        return self.spool_dir if self.spool_dir is not None else self.data_dir / "spool"

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir if self.outbox_dir is not None else self.data_dir / "outbox"


class DatabaseSettings(Section):
    """The index database: SQLite by default, PostgreSQL for several workers."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (sqlite:///PATH or postgresql+psycopg://...); null: sqlite:///<data_dir>/gazex.db",
    )
    upgrade_on_start: bool = Field(
        default=True, description="gazex serve applies pending migrations; false: refuse to start on an old schema"
    )

    @model_validator(mode="after")
    def _scheme(self) -> DatabaseSettings:
        if self.url is not None and not self.url.startswith(("sqlite://", "postgresql+psycopg://", "postgresql://")):
            raise ValueError(
                f"database.url {self.url!r} is not supported: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
            )
        return self


class Settings(BaseSettings):
    """The root of all settings.  Build it with :func:`gateway.config.load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="GAZEX_", env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    dicom: DicomSettings = Field(default_factory=DicomSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    destinations: Annotated[dict[str, AnyDestination], AfterValidator(_destination_names)] = Field(
        default_factory=dict, description="archives that receive results, by name"
    )
    completion: CompletionSettings = Field(default_factory=CompletionSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    dicomweb: DicomwebSettings = Field(default_factory=DicomwebSettings)
    sources: SourceMap = Field(
        default_factory=dict, description="archives we query and retrieve studies from (gazex pull), by name"
    )
    pull: PullSettings = Field(default_factory=PullSettings)

    @model_validator(mode="after")
    def _certificate_callers_need_client_certificates(self) -> Settings:
        if self.dicomweb.certificate_callers and self.http.tls.client_ca_certificates is None:
            raise ValueError(
                "dicomweb.certificate_callers needs http.tls.client_ca_certificates (the CAs of the senders' "
                "certificates), or the server never asks for a certificate"
            )
        return self

    @model_validator(mode="after")
    def _rules_name_known_destinations(self) -> Settings:
        problems = []
        for index, rule in enumerate(self.routing.rules):
            for name in rule.destinations or ():
                if name not in self.destinations:
                    known = ", ".join(sorted(self.destinations)) or "none"
                    problems.append(
                        f"routing.rules[{index}] ({rule.name}) sends to {name!r}, which is not in destinations "
                        f"(configured: {known})"
                    )
        for name, source in self.sources.items():
            move_to = getattr(source, "move_destination_ae", None)
            if move_to is not None and move_to not in self.dicom.ae_titles:
                problems.append(
                    f"sources.{name}.move_destination_ae {move_to!r} is not one of our dicom.ae_titles "
                    f"({', '.join(self.dicom.ae_titles)}): C-MOVE results sent to it would be refused"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values given: :func:`gateway.config.load_settings` layers file, environment and flags."""
        return (init_settings,)

    @property
    def database_url(self) -> str:
        """The database URL, with the embedded SQLite default filled in."""
        if self.database.url is not None:
            return self.database.url
        return f"sqlite:///{self.storage.data_dir / 'gazex.db'}"

    @property
    def audit_path(self) -> Path:
        """The audit file, with the default under the data directory filled in."""
        return self.audit.path if self.audit.path is not None else self.storage.data_dir / "audit" / "audit.log"
