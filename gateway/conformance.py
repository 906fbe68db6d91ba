"""The generated tables of the DICOM Conformance Statement (``docs/conformance.md``).

Every table is computed from what the node and the sender actually use: the settings'
defaults, the presentation contexts of :mod:`gateway.dicom.contexts`, the C-STORE statuses of
:mod:`gateway.dicom.store`, the rejections of :func:`gateway.dicom.admission.admission`, the
status policy of :mod:`gateway.pipeline.states`, the outputs and code table of ``dicom_sr``.
``python -m gateway.docgen --write`` puts them into the page.
"""

from __future__ import annotations

import pynetdicom
from pydicom.charset import python_encoding
from pydicom.uid import UID
from pynetdicom._globals import APPLICATION_CONTEXT_NAME
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

import dicom_sr
from gateway.config.pipeline import DEFAULT_OUTPUTS, Destination
from gateway.config.settings import AllowedCaller, DicomSettings, Settings
from gateway.dicom.admission import AssociationRequest, Rejection, admission
from gateway.dicom.store import StoreStatus
from gateway.docgen import markdown_table
from gateway.pipeline.outbox import OUTPUT_KIND_BY_SOP_CLASS
from gateway.pipeline.sender import PROPOSED_TRANSFER_SYNTAXES
from gateway.pipeline.states import StoreOutcome, store_outcome
from gateway.pull.dimse import QUERY_RETRIEVE_SOP_CLASSES
from inference import SUPPORTED_TRANSFER_SYNTAXES

#: When the node answers each C-STORE status (PS3.4 Annex B.2.3); a status without a row here is a test failure.
#: Failure Reasons of STOW-RS only: C-STORE refuses these at presentation context negotiation (docs/dicomweb.md).
STOW_ONLY_STATUSES = frozenset({StoreStatus.SOP_CLASS_NOT_SUPPORTED, StoreStatus.TRANSFER_SYNTAX_NOT_SUPPORTED})
STORE_STATUS_MEANINGS: dict[StoreStatus, tuple[str, str]] = {
    StoreStatus.SUCCESS: (
        "Success",
        "the instance was written, fsynced and indexed; or an identical copy (same SOP Instance UID, bytes and "
        "transfer syntax) was already stored",
    ),
    StoreStatus.OUT_OF_RESOURCES: (
        "Refused: Out of Resources",
        "free disk below `storage.min_free_disk` (refused before anything is written), the disk filled while "
        "writing (the partial file is deleted), the index database is unavailable, or the node is shutting down",
    ),
    StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS: (
        "Error: Data Set does not match SOP Class",
        "the data set's SOP Class UID or SOP Instance UID differs from the C-STORE request's",
    ),
    StoreStatus.CANNOT_UNDERSTAND: (
        "Error: Cannot understand",
        "the data set does not parse in its transfer syntax: truncated, an invalid VR, an element or item that "
        "overruns, a deflated stream that does not inflate, sequences nested more than 32 deep",
    ),
    StoreStatus.PROCESSING_FAILURE: (
        "Error: Cannot understand (processing failure)",
        "an unexpected error inside the gateway (logged with its traceback, never with patient data); the "
        "association goes on",
    ),
    StoreStatus.MISSING_IDENTIFIERS: (
        "Error: Cannot understand (missing identifiers)",
        "no Study Instance UID or Series Instance UID, so the instance cannot be filed",
    ),
}

#: C-STORE response statuses an archive may send (PS3.4 Annex B.2.3 and PS3.7 Annex C), to show
#: how the sender's policy (:func:`gateway.pipeline.states.store_outcome`) treats each.
PEER_STATUSES: tuple[tuple[int, str], ...] = (
    (0x0000, "Success"),
    (0x0001, "Warning: Requested optional attributes are not supported"),
    (0x0107, "Warning: Attribute list error"),
    (0x0116, "Warning: Attribute value out of range"),
    (0xB000, "Warning: Coercion of data elements"),
    (0xB006, "Warning: Elements discarded"),
    (0xB007, "Warning: Data Set does not match SOP Class"),
    (0x0110, "Failure: Processing failure"),
    (0x0117, "Failure: Invalid object instance"),
    (0x0122, "Failure: SOP Class not supported"),
    (0x0124, "Failure: Not authorized"),
    (0x0210, "Failure: Duplicate invocation"),
    (0x0211, "Failure: Unrecognized operation"),
    (0x0212, "Failure: Mistyped argument"),
    (0x0213, "Failure: Resource limitation"),
    (0xA700, "Refused: Out of resources (0xA700-0xA7FF)"),
    (0xA900, "Error: Data Set does not match SOP Class (0xA900-0xA9FF)"),
    (0xC000, "Error: Cannot understand (0xC000-0xCFFF)"),
)

_OUTCOME_TREATMENT = {
    StoreOutcome.SUCCESS: "acknowledged: never sent to this destination again",
    StoreOutcome.WARNING: "acknowledged (logged at WARNING with the status): never sent to this destination again",
    StoreOutcome.FAILURE: "not acknowledged: the delivery is retried with backoff, then dead-lettered",
}


def _uid_name(uid: str) -> str:
    return UID(uid).name


def scp_sop_classes() -> str:
    """Verification and every storage SOP class the node accepts with the default ``dicom.sop_classes``."""
    rows = [(_uid_name(Verification), f"`{Verification}`", "SCP")]
    rows += [(_uid_name(uid), f"`{uid}`", "SCP") for uid in DicomSettings().sop_class_uids()]
    return markdown_table(["SOP Class", "UID", "Role"], rows)


def scp_transfer_syntaxes() -> str:
    """Every transfer syntax accepted with the default ``dicom.transfer_syntaxes``, and which the model decodes."""
    decodable = {str(uid) for uid in SUPPORTED_TRANSFER_SYNTAXES}
    rows = [
        (_uid_name(uid), f"`{uid}`", "yes" if str(uid) in decodable else "no (stored and indexed, not analysed)")
        for uid in DicomSettings().transfer_syntax_uids()
    ]
    return markdown_table(["Transfer Syntax", "UID", "Pixel data decoded for analysis"], rows)


def scu_sop_classes() -> str:
    """What the gateway sends: the output objects (C-STORE), Verification for ``gazex echo``, and the
    Query/Retrieve classes of ``gazex pull``."""
    by_kind = {kind: sop_class for sop_class, kind in OUTPUT_KIND_BY_SOP_CLASS.items()}
    numbers = dicom_sr.SeriesNumbers()
    rows = []
    for kind in dicom_sr.OUTPUT_KINDS:
        if kind not in by_kind:
            raise ValueError(
                f"output kind {kind!r} has no SOP class in gateway.pipeline.outbox.OUTPUT_KIND_BY_SOP_CLASS"
            )
        uid = by_kind[kind]
        rows.append(
            (
                _uid_name(uid),
                f"`{uid}`",
                "SCU",
                f"`{kind}`",
                "yes" if kind in DEFAULT_OUTPUTS else "no",
                getattr(numbers, kind),
                dicom_sr.SERIES_DESCRIPTIONS[kind],
            )
        )
    rows.append((_uid_name(Verification), f"`{Verification}`", "SCU", "(`gazex echo`)", "", "", ""))
    for uid, use in QUERY_RETRIEVE_SOP_CLASSES:
        rows.append((_uid_name(uid), f"`{uid}`", "SCU", f"(`gazex pull`: {use})", "", "", ""))
    return markdown_table(
        ["SOP Class", "UID", "Role", "Output (`outputs:`)", "Made by default", "Series Number", "Series Description"],
        rows,
    )


def scu_transfer_syntaxes() -> str:
    """The transfer syntaxes proposed for each SOP class sent, in order of preference."""
    rows = [(index, _uid_name(uid), f"`{uid}`") for index, uid in enumerate(PROPOSED_TRANSFER_SYNTAXES, start=1)]
    return markdown_table(["Preference", "Transfer Syntax", "UID"], rows)


def association_policies() -> str:
    """The association parameters, with their defaults and the settings that change them."""
    settings = Settings()
    dicom = settings.dicom
    timeouts = dicom.timeouts
    destination_timeout = Destination.model_fields["timeout_seconds"].default
    scu_pdu = pynetdicom.AE().maximum_pdu_size

    def seconds(value: float | None) -> str:
        return "none" if value is None else f"{value:g} s"

    rows = [
        ("AE title (SCP)", f"`{dicom.ae_title}`", "`dicom.ae_titles` (several allowed; callers may call any)"),
        ("TCP port (SCP)", dicom.port, "`dicom.port`"),
        ("AE title (SCU)", "the first of `dicom.ae_titles`", "`destinations.<name>.calling_ae_title`"),
        ("Application Context Name", f"`{APPLICATION_CONTEXT_NAME}` (DICOM Application Context Name)", ""),
        ("Implementation Class UID", f"`{pynetdicom.PYNETDICOM_IMPLEMENTATION_UID}`", "(pynetdicom's)"),
        ("Implementation Version Name", f"`{pynetdicom.PYNETDICOM_IMPLEMENTATION_VERSION}`", "(pynetdicom's)"),
        ("Maximum PDU size received (SCP)", f"{dicom.max_pdu_size} bytes", "`dicom.max_pdu_size` (0: no limit)"),
        ("Maximum PDU size received (SCU)", f"{scu_pdu} bytes", ""),
        ("Maximum concurrent associations (SCP)", dicom.max_associations, "`dicom.max_associations`"),
        (
            "Connections waiting for admission",
            f"{dicom.max_pending_connections} in total, {dicom.max_pending_per_address} per IP address",
            "`dicom.max_pending_connections`, `dicom.max_pending_per_address`",
        ),
        (
            "Concurrent associations (SCU)",
            f"up to {settings.delivery.concurrency} per process, one per delivery attempt",
            "`delivery.concurrency`",
        ),
        ("Asynchronous operations window", "not negotiated: one operation at a time (1 invoked, 1 performed)", ""),
        ("ACSE timeout (SCP)", seconds(timeouts.acse), "`dicom.timeouts.acse`"),
        ("DIMSE timeout (SCP)", seconds(timeouts.dimse), "`dicom.timeouts.dimse`"),
        ("Network (idle) timeout (SCP)", seconds(timeouts.network), "`dicom.timeouts.network`"),
        ("Admission timeout (SCP)", seconds(timeouts.admission), "`dicom.timeouts.admission`"),
        (
            "Connect, ACSE, DIMSE and network timeouts (SCU)",
            seconds(destination_timeout),
            "`destinations.<name>.timeout_seconds`",
        ),
        ("Shutdown grace period", seconds(dicom.shutdown_grace_seconds), "`dicom.shutdown_grace_seconds`"),
    ]
    return markdown_table(["Parameter", "Default", "Setting"], rows)


def store_statuses() -> str:
    """The C-STORE statuses the node returns."""
    c_store = [status for status in StoreStatus if status not in STOW_ONLY_STATUSES]
    missing = [status.name for status in c_store if status not in STORE_STATUS_MEANINGS]
    if missing:
        raise ValueError(f"gateway.conformance.STORE_STATUS_MEANINGS lacks {', '.join(missing)}")
    rows = [(f"`0x{status:04X}`", *STORE_STATUS_MEANINGS[status]) for status in c_store]
    return markdown_table(["Status", "Meaning", "When"], rows)


def peer_statuses() -> str:
    """How the sender treats each C-STORE status a destination may return."""
    rows = []
    for code, meaning in PEER_STATUSES:
        outcome = store_outcome(code)
        rows.append((f"`0x{code:04X}`", meaning, outcome.value, _OUTCOME_TREATMENT[outcome]))
    return markdown_table(["Status", "Meaning", "Outcome", "What the gateway does"], rows)


def rejections() -> str:
    """The A-ASSOCIATE-RJ the node sends, found by asking :func:`admission` itself."""
    ours = ("GAZEX",)
    cases: list[tuple[str, str, AssociationRequest, int]] = [
        (
            "the caller matches no `dicom.allowed_callers` entry",
            "`dicom.reject_unknown_callers`",
            AssociationRequest("STRANGER", "GAZEX", "192.0.2.1"),
            0,
        ),
        (
            "the called AE title is not one of `dicom.ae_titles`",
            "`dicom.require_called_ae_title`",
            AssociationRequest("PACS", "OTHER", "127.0.0.1"),
            0,
        ),
        (
            "`dicom.max_associations` associations are open",
            "`dicom.max_associations`",
            AssociationRequest("PACS", "GAZEX", "127.0.0.1"),
            1,
        ),
    ]
    rows = []
    for why, setting, request, active in cases:
        rejection = admission(
            request,
            ae_titles=ours,
            require_called_ae_title=True,
            allowed_callers=[AllowedCaller(ae_title="PACS", host="127.0.0.1")],
            reject_unknown_callers=True,
            active_associations=active,
            max_associations=1,
            resolve=lambda _name: set(),
        )
        if not isinstance(rejection, Rejection):
            raise ValueError(f"admission() accepted the case that should be rejected: {why}")
        rows.append(
            (
                why,
                f"{rejection.result} ({rejection.kind})",
                f"{rejection.source} ({_SOURCES[rejection.source]})",
                f"{rejection.diagnostic} ({_DIAGNOSTICS[(rejection.source, rejection.diagnostic)]})",
                setting,
            )
        )
    return markdown_table(["When", "Result", "Source", "Reason/Diagnostic", "Setting"], rows)


_SOURCES = {
    1: "DICOM UL service-user",
    2: "DICOM UL service-provider (ACSE related function)",
    3: "DICOM UL service-provider (presentation related function)",
}
_DIAGNOSTICS = {
    (1, 1): "no reason given",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


def code_table() -> str:
    """Every coded concept our outputs use from ``dicom_sr``'s table."""
    rows = [
        (f"`{code.value}`", f"`{code.scheme_designator}`", code.meaning, usage)
        for usage, code in dicom_sr.terminology()
    ]
    return markdown_table(["Code Value", "Coding Scheme Designator", "Code Meaning", "Used for"], rows)


def private_scheme() -> str:
    """The Coding Scheme Identification Sequence item of the private scheme."""
    (item,) = dicom_sr.coding_scheme_identification()
    rows = [
        (keyword, f"`({element.tag.group:04X},{element.tag.element:04X})`", element.value)
        for keyword in (
            "CodingSchemeDesignator",
            "CodingSchemeName",
            "CodingSchemeVersion",
            "CodingSchemeResponsibleOrganization",
        )
        for element in (item[keyword],)
    ]
    return markdown_table(["Attribute", "Tag", "Value"], rows)


def character_sets() -> str:
    """The Specific Character Set defined terms the gateway reads and writes (pydicom's)."""
    rows = [(f"`{term}`", encoding) for term, encoding in python_encoding.items() if term]
    return markdown_table(["Specific Character Set (0008,0005)", "Python codec"], rows)


def conformance_blocks() -> dict[str, str]:
    """Block name -> Markdown, for ``docs/conformance.md``."""
    return {
        "scp-sop-classes": scp_sop_classes(),
        "scp-transfer-syntaxes": scp_transfer_syntaxes(),
        "scu-sop-classes": scu_sop_classes(),
        "scu-transfer-syntaxes": scu_transfer_syntaxes(),
        "association-policies": association_policies(),
        "store-statuses": store_statuses(),
        "peer-statuses": peer_statuses(),
        "rejections": rejections(),
        "code-table": code_table(),
        "private-scheme": private_scheme(),
        "character-sets": character_sets(),
    }
