"""Settings of everything after ingest: the model, routing, destinations, completion, worker,
delivery and retention.

Like the ingest sections, every model here forbids unknown keys and is immutable.  The routing
rules are data; :mod:`gateway.pipeline.routing` evaluates them (pure functions).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    FilePath,
    Tag,
    field_validator,
    model_validator,
)

from gateway.dicom.contexts import resolve_storage_sop_class
from inference import AVAILABLE_BACKENDS

#: The outputs a rule may ask for (``dicom_sr.OUTPUT_KINDS``; checked in a test).
OutputKind = Literal["sr", "seg", "gsps", "text_sr", "sc"]
DEFAULT_OUTPUTS: tuple[OutputKind, ...] = ("sr", "seg", "gsps")

#: ``model.path`` values that select the FakeEngine: for tests and benchmarks only.
FAKE_MODEL = "fake"

_AE_TITLE_CHARS = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _ae_title(value: str) -> str:
    if not _AE_TITLE_CHARS.match(value) or not value.strip():
        raise ValueError("must be 1 to 16 printable ASCII characters, not only spaces, and no backslash")
    return value.strip()


AETitle = Annotated[str, AfterValidator(_ae_title)]


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return value


Name = Annotated[str, AfterValidator(_name)]


# -- the model ---------------------------------------------------------------------------


class ModelSettings(Section):
    """Which GazeX checkpoint analyses studies, and how it runs (the arguments of ``inference.load_engine``)."""

    path: str = Field(
        default="builtin:gazex-demo",
        min_length=1,
        description="a GazeX checkpoint directory or builtin:NAME; 'fake' (tests and benchmarks only) "
        "uses the fixed-answer FakeEngine, 'fake:seconds=S' one that takes S seconds per study",
    )
    allow_demo: bool = Field(
        default=False,
        description='run a demo checkpoint (the bundled builtin:gazex-demo, or gazex.json "demo": true), which '
        "writes nonsense on real radiographs; false: gazex serve and gazex worker refuse it",
    )
    backend: str = Field(default="torch", description="torch, onnx, tensorrt, triton (hf-generate: comparisons only)")
    fallback: list[str] = Field(
        default_factory=list, description="backends tried in order when backend cannot be set up; empty: none"
    )
    device: str = Field(default="auto", min_length=1, description="auto (CUDA when available), cpu, cuda or cuda:N")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(default="auto", description="torch backends")
    max_batch: int = Field(default=16, ge=1, description="attention prompts decoded together")
    cache_dir: Path | None = Field(
        default=None, description="exports and engines; null: $GAZEX_CACHE_DIR or ~/.cache/gazex"
    )
    onnx_dir: Path | None = Field(default=None, description="an existing gazex model export-onnx folder")
    engine_dir: Path | None = Field(default=None, description="TensorRT engines; null: under the cache")
    precision: Literal["bf16", "fp16"] = Field(default="bf16", description="TensorRT engine precision")
    triton_url: str = Field(default="http://127.0.0.1:8000", description="http://HOST:PORT or grpc://HOST:PORT")
    triton_timeout: float = Field(default=60.0, gt=0, description="seconds per Triton request")
    threads: int | None = Field(default=None, ge=1, description="ONNX Runtime intra-op threads; null: its choice")

    @property
    def is_fake(self) -> bool:
        return self.path == FAKE_MODEL or self.path.startswith(FAKE_MODEL + ":")

    @model_validator(mode="after")
    def _known(self) -> ModelSettings:
        if self.is_fake:
            fake_seconds(self.path)  # raises ValueError with what is allowed
        return self

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        return _known_backend(value)

    @field_validator("fallback")
    @classmethod
    def _fallback(cls, value: list[str]) -> list[str]:
        return [_known_backend(name) for name in value]


def _known_backend(name: str) -> str:
    if name not in AVAILABLE_BACKENDS:
        raise ValueError(f"backend {name!r} is not known; choose from {', '.join(AVAILABLE_BACKENDS)}")
    return name


def fake_seconds(path: str) -> float:
    """The delay of a ``fake`` or ``fake:seconds=S`` model reference."""
    if path == FAKE_MODEL:
        return 0.0
    option = path[len(FAKE_MODEL) + 1 :]
    match = re.fullmatch(r"seconds=([0-9]+(?:\.[0-9]*)?)", option)
    if match is None:
        raise ValueError(f"model.path {path!r}: the fake model takes no option but 'seconds=S', e.g. fake:seconds=2")
    return float(match.group(1))


# -- routing -----------------------------------------------------------------------------


class Condition(Section):
    """One condition on one header field: an exact list (``in``) or a regular expression, maybe negated.

    Shorthand: a list or a single string means ``{in: [...]}``.  ``in`` compares case-
    insensitively after trimming spaces; ``null`` in the list matches an absent or empty
    value.  ``regex`` must match the value from its start (``re.match``); an absent value is
    matched as the empty string.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    values: list[str | None] | None = Field(default=None, alias="in", description="exact values (null: absent)")
    regex: str | None = Field(default=None, description="a Python regular expression, matched at the start")
    negate: bool = Field(default=False, description="true: the condition holds when the value does NOT match")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str) or data is None:
            return {"in": [data]}
        if isinstance(data, list):
            return {"in": data}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        if (self.values is None) == (self.regex is None):
            raise ValueError("give exactly one of 'in' (a list of values) and 'regex'")
        if self.values is not None and not self.values:
            raise ValueError("'in' must list at least one value (null matches an absent value)")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from None
        return self


def _sop_class_condition(condition: Condition | None) -> Condition | None:
    """SOP class lists may use keywords (ComputedRadiographyImageStorage); they become UIDs."""
    if condition is None or condition.values is None:
        return condition
    values = [None if value in (None, "") else resolve_storage_sop_class(value) for value in condition.values]
    return condition.model_copy(update={"values": values})


class Match(Section):
    """Conditions on one instance; all given conditions must hold (an empty match holds for any instance)."""

    modality: Condition | None = Field(default=None, description="Modality (0008,0060) of the series")
    sop_class: Annotated[Condition | None, AfterValidator(_sop_class_condition)] = Field(
        default=None, description="SOP Class UID; lists may use keywords"
    )
    body_part: Condition | None = Field(default=None, description="Body Part Examined (0018,0015)")
    view_position: Condition | None = Field(default=None, description="View Position (0018,5101)")
    laterality: Condition | None = Field(
        default=None, description="Image Laterality (0020,0062), else the series' Laterality"
    )
    series_description: Condition | None = Field(default=None, description="Series Description (0008,103E)")
    calling_ae: Condition | None = Field(default=None, description="the AE title that sent the instance")
    called_ae: Condition | None = Field(default=None, description="the AE title of ours it was sent to")


def _chest_rule() -> RoutingRule:
    return RoutingRule.model_validate(
        {
            "name": "chest-radiograph",
            "match": [
                {"modality": ["CR", "DX"], "body_part": ["CHEST"]},
                {"modality": ["CR", "DX"], "body_part": [None], "view_position": ["PA", "AP"]},
            ],
            "analyze": {"view_position": ["PA", "AP", None]},
        }
    )


class RoutingRule(Section):
    """A rule: which instances it takes, which of them are analysed, where results go and which outputs."""

    name: Name = Field(description="the rule's name, shown by gazex studies and gazex rules test")
    match: list[Match] = Field(
        min_length=1, description="the rule takes an instance when ANY of these matches (a single mapping is fine)"
    )
    analyze: Match = Field(
        default_factory=Match,
        description="of the instances taken, those analysed; the others are kept as context (default: all)",
    )
    destinations: list[Name] | None = Field(
        default=None, description="names from destinations; null: every configured destination"
    )
    outputs: list[OutputKind] = Field(
        default_factory=lambda: list(DEFAULT_OUTPUTS), min_length=1, description="which DICOM outputs to make"
    )

    @model_validator(mode="before")
    @classmethod
    def _single_match(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("match"), dict):
            return {**data, "match": [data["match"]]}
        return data

    @model_validator(mode="after")
    def _distinct(self) -> RoutingRule:
        if len(set(self.outputs)) != len(self.outputs):
            raise ValueError("outputs must not repeat a kind")
        if self.destinations is not None and len(set(self.destinations)) != len(self.destinations):
            raise ValueError("destinations must not repeat a name")
        return self


class RoutingSettings(Section):
    """Ordered rules: the first rule that takes an instance of a study routes the study."""

    rules: list[RoutingRule] = Field(
        default_factory=lambda: [_chest_rule()], description="ordered routing rules; the first that applies wins"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> RoutingSettings:
        names = [rule.name for rule in self.rules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(repeated)}")
        return self


# -- destinations ------------------------------------------------------------------------


class DestinationTLS(Section):
    """DICOM TLS towards a destination: verify its certificate, optionally present ours."""

    enabled: bool = Field(default=False, description="speak TLS to this destination")
    ca_certificates: FilePath | None = Field(
        default=None, description="PEM file of CAs that sign the destination's certificate; null: the system's"
    )
    certificate: FilePath | None = Field(default=None, description="PEM file: our client certificate (mutual TLS)")
    private_key: FilePath | None = Field(default=None, description="PEM file: the client certificate's key")
    verify: bool = Field(default=True, description="check the destination's certificate chain")
    minimum_version: Literal["1.2", "1.3"] = Field(default="1.2", description="oldest TLS version used")

    @model_validator(mode="after")
    def _key_pair(self) -> DestinationTLS:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("tls.certificate and tls.private_key go together: give both or neither")
        return self


class Destination(Section):
    """An archive (C-STORE SCP) that receives the results."""

    type: Literal["dicom"] = Field(default="dicom", description="dicom: C-STORE (the default); dicomweb: STOW-RS")
    ae_title: AETitle = Field(description="the destination's AE title (called AE)")
    host: str = Field(min_length=1, description="host name or IP address")
    port: int = Field(ge=1, le=65535, description="TCP port")
    calling_ae_title: AETitle | None = Field(default=None, description="our AE title towards it; null: dicom's first")
    timeout_seconds: float = Field(default=30.0, gt=0, description="connect, association and DIMSE timeout")
    tls: DestinationTLS = Field(default_factory=DestinationTLS)


#: The keys each ``authentication.type`` of a DICOMweb destination needs ...
DICOMWEB_AUTHENTICATION_NEEDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "basic": ("username", "password_file"),
    "bearer": ("token_file",),
    "oauth2": ("token_url", "client_id", "client_secret_file"),
}
#: ... and those it may also take.
DICOMWEB_AUTHENTICATION_OPTIONAL: dict[str, tuple[str, ...]] = {"oauth2": ("scope", "client_authentication")}


class DicomwebAuthentication(Section):
    """How the gateway authenticates to a DICOMweb destination; secrets are read from files, never written inline."""

    type: Literal["none", "basic", "bearer", "oauth2"] = Field(
        default="none",
        description="none; basic (username, password_file); bearer (token_file); "
        "oauth2: client credentials (token_url, client_id, client_secret_file, scope)",
    )
    username: str | None = Field(default=None, min_length=1, description="basic: the user name")
    password_file: FilePath | None = Field(default=None, description="basic: a file holding the password")
    token_file: FilePath | None = Field(
        default=None, description="bearer: a file holding the token (read at every attempt, so it may be rotated)"
    )
    token_url: str | None = Field(default=None, description="oauth2: the token endpoint (http:// or https://)")
    client_id: str | None = Field(default=None, min_length=1, description="oauth2: our client id")
    client_secret_file: FilePath | None = Field(default=None, description="oauth2: a file holding the client secret")
    scope: str | None = Field(default=None, min_length=1, description="oauth2: the scope asked for; null: none")
    client_authentication: Literal["basic", "post"] = Field(
        default="basic",
        description="oauth2: send the client id and secret as HTTP basic authentication (RFC 6749's default) "
        "or in the form body (post)",
    )

    @model_validator(mode="after")
    def _per_type(self) -> DicomwebAuthentication:
        needs = DICOMWEB_AUTHENTICATION_NEEDS[self.type]
        allowed = set(needs) | set(DICOMWEB_AUTHENTICATION_OPTIONAL.get(self.type, ()))
        missing = [key for key in needs if getattr(self, key) is None]
        if missing:
            raise ValueError(f"authentication type {self.type} needs {', '.join(missing)}")
        keys = ("username", "password_file", "token_file", "token_url", "client_id", "client_secret_file", "scope")
        extra = [key for key in keys if key not in allowed and getattr(self, key) is not None]
        if extra:
            raise ValueError(f"authentication type {self.type} does not use {', '.join(extra)}")
        if self.token_url is not None:
            _http_url(self.token_url)
        return self


class DicomwebTLS(Section):
    """HTTPS towards a DICOMweb destination (used when base_url starts with https://)."""

    verify: bool = Field(default=True, description="check the server's certificate chain and host name")
    ca_certificates: FilePath | None = Field(
        default=None, description="PEM file of CAs that sign the server's certificate; null: the system's"
    )
    certificate: FilePath | None = Field(default=None, description="PEM file: our client certificate (mutual TLS)")
    private_key: FilePath | None = Field(default=None, description="PEM file: the client certificate's key")

    @model_validator(mode="after")
    def _key_pair(self) -> DicomwebTLS:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("tls.certificate and tls.private_key go together: give both or neither")
        return self


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: give the URL without a query or fragment")
    return value.rstrip("/")


class DicomwebDestination(Section):
    """A DICOMweb service (STOW-RS) that receives the results."""

    type: Literal["dicomweb"] = Field(description="dicomweb: send with STOW-RS")
    base_url: Annotated[str, AfterValidator(_http_url)] = Field(
        description="the DICOMweb service root; instances are POSTed to BASE_URL/studies "
        "(e.g. http://orthanc:8042/dicom-web)"
    )
    authentication: DicomwebAuthentication = Field(default_factory=DicomwebAuthentication)
    tls: DicomwebTLS = Field(default_factory=DicomwebTLS)
    timeout_seconds: float = Field(default=30.0, gt=0, description="connect, send and response timeout")
    max_instances_per_request: int = Field(
        default=10, ge=1, le=1000, description="outputs sent in one STOW-RS request (one multipart part each)"
    )

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)


def _destination_type(value: Any) -> str:
    kind = value.get("type", "dicom") if isinstance(value, dict) else getattr(value, "type", "dicom")
    return kind if isinstance(kind, str) else repr(kind)


#: A destination of either type; ``type`` defaults to ``dicom``, so older configurations keep working.
AnyDestination = Annotated[
    Annotated[Destination, Tag("dicom")] | Annotated[DicomwebDestination, Tag("dicomweb")],
    Discriminator(
        _destination_type,
        custom_error_type="destination_type",
        custom_error_message="type must be dicom (C-STORE, the default) or dicomweb (STOW-RS)",
    ),
]


#: The destination models by ``type``.
DESTINATION_TYPES: dict[str, type[Destination] | type[DicomwebDestination]] = {
    "dicom": Destination,
    "dicomweb": DicomwebDestination,
}


def _destination_names(value: dict[str, Any]) -> dict[str, Any]:
    for name in value:
        _name(name)
    return value


# -- timing of the pipeline -------------------------------------------------------------


class CompletionSettings(Section):
    """When a study counts as complete."""

    quiet_seconds: float = Field(default=10.0, gt=0, description="complete when nothing arrived for this long")
    max_wait_seconds: float = Field(
        default=600.0, gt=0, description="complete at the latest this long after its first (new) instance"
    )
    check_interval_seconds: float = Field(default=2.0, gt=0, description="how often studies are checked")

    @model_validator(mode="after")
    def _order(self) -> CompletionSettings:
        if self.max_wait_seconds < self.quiet_seconds:
            raise ValueError("max_wait_seconds must be at least quiet_seconds")
        return self


class WorkerSettings(Section):
    """Workers: claim jobs, analyse, encode, write the outbox."""

    concurrency: int = Field(default=1, ge=1, description="jobs analysed at once by one process")
    lease_seconds: float = Field(
        default=120.0, gt=0, description="a claim lasts this long unless renewed; then another worker may take it"
    )
    heartbeat_seconds: float = Field(default=20.0, gt=0, description="how often a running job renews its lease")
    max_attempts: int = Field(default=3, ge=1, description="after this many attempts a job fails (and stays listed)")
    retry_delay_seconds: float = Field(default=30.0, ge=0, description="wait before a failed job's next attempt")
    poll_seconds: float = Field(default=1.0, gt=0, description="how often an idle worker looks for work")

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> WorkerSettings:
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError("heartbeat_seconds must be at most half of lease_seconds, so one late beat is survived")
        return self


class DeliverySettings(Section):
    """Sending results: retries with exponential backoff and jitter, then the dead letter."""

    base_delay_seconds: float = Field(default=10.0, ge=0, description="delay before the first retry")
    factor: float = Field(default=2.0, ge=1, description="each retry waits this many times longer")
    max_delay_seconds: float = Field(default=3600.0, ge=0, description="no retry waits longer")
    jitter: float = Field(default=0.2, ge=0, le=1, description="delays are shortened by a random 0..jitter fraction")
    max_attempts: int = Field(default=10, ge=1, description="after this many attempts a delivery is dead-lettered")
    concurrency: int = Field(default=4, ge=1, description="deliveries sent at once by one process")
    lease_seconds: float = Field(default=120.0, gt=0, description="a claimed delivery's lease")
    heartbeat_seconds: float = Field(default=20.0, gt=0, description="how often a delivery in progress renews it")
    poll_seconds: float = Field(default=1.0, gt=0, description="how often an idle sender looks for work")

    @model_validator(mode="after")
    def _order(self) -> DeliverySettings:
        if self.max_delay_seconds < self.base_delay_seconds:
            raise ValueError("max_delay_seconds must be at least base_delay_seconds")
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError("heartbeat_seconds must be at most half of lease_seconds")
        return self


class RetentionSettings(Section):
    """Removing the files of finished work."""

    retention_days: float = Field(
        default=30.0, gt=0, description="spool and outbox files of finished studies are removed after this many days"
    )
    high_watermark_percent: float = Field(
        default=90.0, gt=0, le=100, description="disk use above this removes finished work early, oldest first"
    )
    low_watermark_percent: float = Field(default=80.0, gt=0, le=100, description="... until disk use is below this")
    unindexed_grace_seconds: float = Field(
        default=3600.0, gt=0, description="spool and outbox files no database row names are removed after this age"
    )
    check_interval_seconds: float = Field(default=600.0, gt=0, description="how often retention runs")

    @model_validator(mode="after")
    def _order(self) -> RetentionSettings:
        if self.low_watermark_percent > self.high_watermark_percent:
            raise ValueError("low_watermark_percent must be at most high_watermark_percent")
        return self
