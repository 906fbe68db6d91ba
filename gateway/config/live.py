"""The live configuration: the sections IT changes while the gateway runs, kept in the database.

The managed sections (:data:`MANAGED`) are our AE titles, the allowed callers, the two
admission flags, the destinations and the routing rules.  Their values live in the table
``config_revisions``, one row per change, newest wins; the YAML file (with ``GAZEX_*``
variables and flags) seeds revision 1 at first start and is otherwise only the base of the
sections that are not managed.  Every process (``gazex serve``, each ``gazex worker``) reads
the newest revision through :class:`LiveSettings`, so a change applies to the next
association, routing decision and delivery without a restart.

A change is an edit of the JSON document (:mod:`gateway.config.edits`), validated by the same
models as the YAML (:func:`settings_with`) and stored as the next revision in one insert: a
refused change stores nothing and changes nothing.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.config.edits import EditError
from gateway.config.loading import format_errors
from gateway.config.settings import DicomSettings, Settings
from gateway.db.models import ConfigRevision
from gateway.events import ConfigurationChange, GatewayObserver

LOGGER = logging.getLogger(__name__)

#: The keys of ``dicom`` that are live.
MANAGED_DICOM_KEYS = ("ae_titles", "allowed_callers", "require_called_ae_title", "reject_unknown_callers")
#: Every managed section, as dotted key paths.
MANAGED = (*(f"dicom.{key}" for key in MANAGED_DICOM_KEYS), "destinations", "routing")

#: How often :meth:`LiveSettings.apply` retries an edit when another process stored a revision meanwhile.
APPLY_ATTEMPTS = 5

_COLUMNS = (
    ConfigRevision.id,
    ConfigRevision.created_at,
    ConfigRevision.actor,
    ConfigRevision.summary,
    ConfigRevision.document,
)


class ConfigRejected(EditError):  # noqa: N818 - the name the API and its callers use
    """A change (or a stored revision) the settings models refuse; ``problems``: one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__("invalid", message)
        self.problems = problems or [message]


class ConcurrentChangeError(EditError):
    """Other changes kept landing first; nothing was stored."""

    def __init__(self, message: str) -> None:
        super().__init__("conflict", message)


@dataclass(frozen=True)
class Revision:
    """One stored revision of the live configuration."""

    revision: int
    created_at: datetime
    actor: str
    summary: str
    document: dict[str, Any]


# -- the document ------------------------------------------------------------------------------


def managed_document(settings: Settings) -> dict[str, Any]:
    """The managed sections of ``settings`` as a JSON-able mapping (see :mod:`gateway.config.edits`).

    Complete but without null values (every key that may be null is null by default), so it
    reads like the YAML; routing conditions use the YAML's ``in``.
    """
    return {
        "dicom": settings.dicom.model_dump(mode="json", include=set(MANAGED_DICOM_KEYS), exclude_none=True),
        "destinations": {
            # a C-STORE destination's type (the default) is left out, as in the YAML and older revisions
            name: destination.model_dump(
                mode="json", exclude_none=True, exclude={"type"} if destination.type == "dicom" else None
            )
            for name, destination in settings.destinations.items()
        },
        "routing": settings.routing.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def section_values(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document by managed section (``{"dicom.ae_titles": [...], ..., "routing": {...}}``)."""
    dicom = document.get("dicom") or {}
    values = {f"dicom.{key}": dicom.get(key) for key in MANAGED_DICOM_KEYS}
    values["destinations"] = document.get("destinations")
    values["routing"] = document.get("routing")
    return values


def differing_sections(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The managed sections whose values differ between two documents, in :data:`MANAGED` order."""
    old, new = section_values(before), section_values(after)
    return [section for section in MANAGED if old[section] != new[section]]


def _shape_problems(document: Any) -> list[str]:
    if not isinstance(document, Mapping):
        kind = type(document).__name__
        return [f"the configuration must be a mapping of dicom, destinations and routing, not {kind}"]
    problems = []
    for key in document:
        if key not in ("dicom", "destinations", "routing"):
            problems.append(f"{key}: not a live setting (live: {', '.join(MANAGED)}); change it in the YAML file")
    dicom = document.get("dicom", {})
    if not isinstance(dicom, Mapping):
        problems.append(f"dicom: must be a mapping of {', '.join(MANAGED_DICOM_KEYS)}")
    else:
        for key in dicom:
            if key not in MANAGED_DICOM_KEYS:
                problems.append(
                    f"dicom.{key}: not a live setting (live in dicom: {', '.join(MANAGED_DICOM_KEYS)}); "
                    "change it in the YAML file and restart"
                )
    return problems


def settings_with(base: Settings, document: Mapping[str, Any]) -> Settings:
    """``base`` with the managed sections of ``document``, validated like the YAML.

    Raises :class:`ConfigRejected` naming each bad key path, what is wrong and what is allowed.
    Sections missing from ``document`` keep ``base``'s values.
    """
    problems = _shape_problems(document)
    if problems:
        raise ConfigRejected("the configuration is refused: " + "; ".join(problems), problems)
    values = base.model_dump(mode="python", by_alias=True)
    for key, value in (document.get("dicom") or {}).items():
        values["dicom"][key] = value
    for key in ("destinations", "routing"):
        if key in document:
            values[key] = document[key]
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        lines = [
            line.replace(" (set by default)", "").replace(" (set in the change)", "")
            for line in format_errors(exc, [("the change", dict(document))], None).splitlines()[1:]
        ]
        problems = [line.removeprefix("  - ") for line in lines]
        raise ConfigRejected("the configuration is refused:\n" + "\n".join(lines), problems) from None


def _load(text: str) -> dict[str, Any]:
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("a stored revision is not a JSON object")
    return document


def _dump(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


# -- the live settings -------------------------------------------------------------------------


class LiveSettings:
    """The current settings of this process: ``base`` with the database's newest managed sections.

    Build it with the engine and the settings loaded from the file, call :meth:`seed` once at
    start, then read :meth:`current` whenever a decision needs the configuration (cheap: at most
    one ``max(id)`` query every ``refresh_seconds``).  Thread-safe.
    """

    def __init__(
        self,
        engine: Engine,
        base: Settings,
        *,
        refresh_seconds: float = 1.0,
        observers: GatewayObserver | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.base = base
        self.refresh_seconds = refresh_seconds
        self.observers = observers or GatewayObserver()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._settings = base
        self._document = managed_document(base)
        self._revision = 0
        self._checked_at: float | None = None

    # -- reading ------------------------------------------------------------------------------
    def seed(self) -> int:
        """At first start, store the base's managed sections as revision 1 (actor ``seed``); then load.

        When a revision exists and the base's managed sections differ from it, one warning names
        the sections, the revision that wins and how to take the file instead.  Returns the
        revision in force.  Safe when several processes start at once.
        """
        if self._latest_id() == 0:
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        insert(ConfigRevision).values(
                            id=1,
                            created_at=datetime.now(UTC),
                            actor="seed",
                            summary="seeded from the configuration file at first start",
                            document=_dump(managed_document(self.base)),
                        )
                    )
                LOGGER.info("live configuration seeded from the configuration file (revision 1)")
            except IntegrityError:
                pass  # another process seeded it first
        latest = self._read_latest()
        if latest is None:  # pragma: no cover - revision 1 was just stored
            raise RuntimeError("the live configuration has no revision after seeding")
        try:
            settings = settings_with(self.base, latest.document)
        except ConfigRejected as exc:
            raise ConfigRejected(
                f"the live configuration in the database (revision {latest.revision}, by {latest.actor}) does not "
                f"validate with this gazex and configuration file; take the file's values with: gazex config reseed "
                f"({'; '.join(exc.problems)})",
                exc.problems,
            ) from None
        with self._lock:
            self._install(latest, settings)
        differing = differing_sections(managed_document(self.base), latest.document)
        if differing:
            self._warn_differing(differing, latest)
        return latest.revision

    def _warn_differing(self, differing: list[str], latest: Revision) -> None:
        LOGGER.warning(
            "the configuration file differs from the live configuration in the database in %s; "
            "revision %d (by %s, %s) is in force; to take the file's values instead run: gazex config reseed",
            ", ".join(differing),
            latest.revision,
            latest.actor,
            latest.created_at.strftime("%Y-%m-%d %H:%M:%S %Z"),
        )

    def current(self) -> Settings:
        """The settings in force now (re-read from the database at most every ``refresh_seconds``)."""
        with self._lock:
            now = self._monotonic()
            if self._checked_at is not None and now - self._checked_at < self.refresh_seconds:
                return self._settings
            self._checked_at = now
            try:
                latest_id = self._latest_id()
                if latest_id != self._revision:
                    latest = self._read_latest()
                    if latest is not None:
                        self._install(latest, settings_with(self.base, latest.document))
            except SQLAlchemyError as exc:
                LOGGER.warning(
                    "cannot read the live configuration (%s); keeping revision %d", type(exc).__name__, self._revision
                )
            except (ConfigRejected, ValueError) as exc:
                LOGGER.error(
                    "the live configuration's newest revision cannot be used, keeping revision %d: %s",
                    self._revision,
                    exc,
                )
            return self._settings

    def dicom(self) -> DicomSettings:
        """The ``dicom`` section in force now: for admission of each new association."""
        return self.current().dicom

    @property
    def revision(self) -> int:
        """The revision in force in this process (0 before :meth:`seed`)."""
        self.current()
        return self._revision

    def document(self) -> dict[str, Any]:
        """The managed sections in force now (a copy: edit it freely)."""
        self.current()
        with self._lock:
            return copy.deepcopy(self._document)

    def history(self, limit: int = 50) -> list[Revision]:
        """The newest ``limit`` revisions, newest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(*_COLUMNS).order_by(ConfigRevision.id.desc()).limit(limit)).all()
        return [_revision(row) for row in rows]

    # -- changing -----------------------------------------------------------------------------
    def apply(
        self,
        edit: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        actor: str,
        summary: str,
        address: str | None = None,
    ) -> ConfigurationChange:
        """Apply ``edit`` to the newest document, validate it and store it as the next revision.

        Raises :class:`~gateway.config.edits.EditError` (from the edit), :class:`ConfigRejected`
        (the result is invalid) or :class:`ConcurrentChangeError`; then nothing is stored.  When
        another process stores a revision between our read and our insert, the edit is applied
        again to the newer document.  An edit that changes nothing stores nothing: the change
        returned then has the current revision and equal ``before`` and ``after``.
        ``before``/``after`` hold the differing sections only, keyed as in :data:`MANAGED`.
        """
        for _attempt in range(APPLY_ATTEMPTS):
            latest = self._read_latest()
            if latest is None:
                raise RuntimeError("the live configuration is not seeded: call seed() first")
            document = edit(copy.deepcopy(latest.document))
            settings = settings_with(self.base, document)
            document = managed_document(settings)  # normalised: keywords as UIDs, defaults filled in
            differing = differing_sections(latest.document, document)
            if not differing:
                return ConfigurationChange(actor=actor, summary=summary, revision=latest.revision, address=address)
            revision = latest.revision + 1
            created_at = datetime.now(UTC)
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        insert(ConfigRevision).values(
                            id=revision, created_at=created_at, actor=actor, summary=summary, document=_dump(document)
                        )
                    )
            except IntegrityError:
                LOGGER.info("revision %d was stored by another process meanwhile; applying the change again", revision)
                continue
            with self._lock:
                self._install(Revision(revision, created_at, actor, summary, document), settings)
            old, new = section_values(latest.document), section_values(document)
            change = ConfigurationChange(
                actor=actor,
                summary=summary,
                revision=revision,
                before={section: old[section] for section in differing},
                after={section: new[section] for section in differing},
                address=address,
            )
            LOGGER.info("live configuration revision %d by %s: %s (%s)", revision, actor, summary, ", ".join(differing))
            self.observers.configuration_changed(change)
            return change
        raise ConcurrentChangeError(
            f"the configuration was changed by others {APPLY_ATTEMPTS} times while this change was applied; "
            "nothing was stored: try again"
        )

    def reseed_from(self, base: Settings, *, actor: str = "file", summary: str | None = None) -> ConfigurationChange:
        """Store ``base``'s managed sections (the configuration file's) as the next revision."""
        document = managed_document(base)
        return self.apply(
            lambda _: copy.deepcopy(document),
            actor=actor,
            summary=summary or "taken from the configuration file (gazex config reseed)",
        )

    # -- inside -------------------------------------------------------------------------------
    def _install(self, latest: Revision, settings: Settings) -> None:
        """Caller holds the lock."""
        self._settings = settings
        self._document = latest.document
        self._revision = latest.revision
        self._checked_at = self._monotonic()

    def _latest_id(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.coalesce(func.max(ConfigRevision.id), 0))).scalar_one())

    def _read_latest(self) -> Revision | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(*_COLUMNS).order_by(ConfigRevision.id.desc()).limit(1)).first()
        return None if row is None else _revision(row)


def _revision(row: Any) -> Revision:
    created_at = row.created_at if row.created_at.tzinfo is not None else row.created_at.replace(tzinfo=UTC)
    return Revision(row.id, created_at, row.actor, row.summary, _load(row.document))
