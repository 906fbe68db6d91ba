"""What every output shares: settings, the encoding context, equipment, text, timestamps.

The context (:class:`EncodeContext`) is built and checked by :func:`dicom_sr.inputs.prepare`;
the builders of each object family read it and call :func:`finalize` on what they build.
Text we write is made encodable in the source's Specific Character Set, which every output
keeps (:func:`encodable_text`).
"""

from __future__ import annotations

import copy
import datetime
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata

import highdicom as hd
from pydicom.charset import convert_encodings
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes

from dicom_sr import codes
from dicom_sr.uids import UidFactory, check_uid_root
from inference.results import Box, Finding, Fixation, ImageAnalysis, ModelIdentity, StudyAnalysis


class EncodeError(ValueError):
    """The analysis or the sources cannot be encoded; the message says what, where, and what to do."""


def _package_version() -> str:
    try:
        return metadata.version("gazex-gateway")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


#: Device Serial Number of outputs encoded without an installation id (a library caller's).
UNREGISTERED_SERIAL_NUMBER = "unregistered"


@dataclass(frozen=True, slots=True)
class SeriesNumbers:
    """Series Number of each output type; they are new series in the source study."""

    sr: int = 9001
    seg: int = 9002
    gsps: int = 9003
    text_sr: int = 9004
    sc: int = 9005


@dataclass(frozen=True, slots=True)
class EncodeSettings:
    """Who we are in the outputs (General Equipment), how series are numbered, and how UIDs are made.

    ``installation_id`` (the gateway's, generated once and kept in its database) goes into every
    UID's derivation, so two installations never issue the same UID; ``uid_root`` is a site's
    own UID root (checked by :func:`dicom_sr.uids.check_uid_root`), else UIDs are ``2.25.<n>``.
    An empty ``device_serial_number`` becomes the installation id (or ``unregistered`` without one).
    """

    manufacturer: str = "GazeX Gateway project"
    model_name: str = "GazeX Gateway"
    software_version: str = field(default_factory=_package_version)
    device_serial_number: str = ""
    institution_name: str | None = None
    institutional_department_name: str | None = None
    series_numbers: SeriesNumbers = field(default_factory=SeriesNumbers)
    installation_id: str = ""
    uid_root: str | None = None
    #: The SEG's pixel values: False (default) stores every segment as two levels, 0 or the
    #: maximum (a box covering at least half a pixel; attention at least half its peak), which
    #: OHIF v3 loads; True stores the exact fractions (box edge coverage, the attention density),
    #: which OHIF 3.13 refuses ("Fractional segmentations are not yet supported").
    seg_exact_fractions: bool = False

    def __post_init__(self) -> None:
        if self.uid_root:
            check_uid_root(self.uid_root)
        if not self.device_serial_number:
            object.__setattr__(self, "device_serial_number", self.installation_id or UNREGISTERED_SERIAL_NUMBER)


@dataclass(frozen=True, slots=True)
class InstanceReference:
    """The identity of one DICOM instance (an earlier output)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> InstanceReference:
        return cls(
            study_instance_uid=str(dataset.StudyInstanceUID),
            series_instance_uid=str(dataset.SeriesInstanceUID),
            sop_class_uid=str(dataset.SOPClassUID),
            sop_instance_uid=str(dataset.SOPInstanceUID),
        )


@dataclass(frozen=True, slots=True)
class Predecessor:
    """An earlier encoding of the same study that this one supersedes.

    ``instances`` are the outputs of that earlier encoding (any of SR, SEG, GSPS, ...). The
    SR lists the earlier SR documents in its Predecessor Documents Sequence; the SEG and GSPS,
    which have no such attribute, name the superseded analysis in their Content Description.
    """

    analysis_id: str
    instances: tuple[InstanceReference, ...] = ()


#: Output kinds, in the order :func:`dicom_sr.encode` returns them.
OUTPUT_KINDS: tuple[str, ...] = ("sr", "seg", "gsps", "text_sr", "sc")
DEFAULT_OUTPUTS: tuple[str, ...] = ("sr", "seg", "gsps")

SERIES_DESCRIPTIONS: dict[str, str] = {
    "sr": "GazeX AI findings (SR)",
    "seg": "GazeX AI regions and attention (SEG)",
    "gsps": "GazeX AI overlay (GSPS)",
    "text_sr": "GazeX AI report text (SR)",
    "sc": "GazeX AI overlay, burned in (SC)",
}

#: Shown wherever a person reads our output outside an SR viewer.
DISCLAIMER = "AI generated - not for diagnosis"
#: Shown instead, and before everything else, when the model is a demo checkpoint
#: (``ModelIdentity.demo``): its output is not a reading of the radiograph.
DEMO_NOTICE = "DEMO MODEL \u2013 NOT FOR CLINICAL USE"
#: The short series descriptions that follow :data:`DEMO_NOTICE` (LO: 64 characters in all).
DEMO_SERIES_DESCRIPTIONS: dict[str, str] = {
    "sr": "GazeX SR",
    "seg": "GazeX SEG",
    "gsps": "GazeX GSPS",
    "text_sr": "GazeX text SR",
    "sc": "GazeX SC",
}


def charset_encodings(dataset: Dataset) -> tuple[str, ...]:
    value = dataset.get("SpecificCharacterSet")
    if not value:
        return ("ascii",)
    values = [value] if isinstance(value, str) else list(value)
    if all(v in ("", "ISO_IR 6", "ISO 2022 IR 6") for v in values):
        return ("ascii",)
    return tuple(convert_encodings(values))


_TYPOGRAPHIC = {
    "\u2014": "-",
    "\u2013": "-",
    "\u2212": "-",
    "\u2010": "-",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2026": "...",
    "\u00a0": " ",
    "\u2022": "*",
}


def encodable_text(
    text: str, encodings: Sequence[str], *, max_length: int | None = None, single_line: bool = False
) -> str:
    """``text`` with every character the character set cannot hold replaced.

    Typographic punctuation becomes its ASCII form, accented letters lose their accents when
    the repertoire lacks them, anything else becomes "?".  ``single_line`` (for LO/SH/ST
    values) also replaces control characters and the value delimiter "\\".
    """

    def fits(piece: str) -> bool:
        for encoding in encodings:
            try:
                piece.encode(encoding)
            except (UnicodeEncodeError, LookupError):
                continue
            return True
        return False

    out: list[str] = []
    for char in text:
        if single_line and (char == "\\" or unicodedata.category(char) == "Cc"):
            out.append("/" if char == "\\" else " ")
        elif fits(char):
            out.append(char)
        elif char in _TYPOGRAPHIC and fits(_TYPOGRAPHIC[char]):
            out.append(_TYPOGRAPHIC[char])
        else:
            stripped = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            out.append(stripped if stripped and fits(stripped) else "?")
    result = "".join(out)
    if max_length is not None and len(result) > max_length:
        result = result[: max_length - 3].rstrip() + "..."
    return result


@dataclass(frozen=True)
class PlacedFinding:
    """A present finding, or a statement, numbered in reading order, with its geometry clipped to the image.

    A *statement* is a sentence whose label is neutral (``other``: "The trachea is midline.",
    ``no_finding``: "No acute cardiopulmonary process."): it states something normal or names
    nothing in the finding vocabulary.  Statements keep their evidence boxes in the SR and GSPS
    but are numbered apart ("S1"), carry no Finding code and get no SEG segment, so neither a
    reader nor a PACS that counts findings takes them for findings.
    """

    number: int
    finding: Finding
    observation: Box | None
    clues: tuple[Box, ...]
    tracking_uid: str
    clue_tracking_uids: tuple[str, ...]

    @property
    def statement(self) -> bool:
        return self.finding.label in codes.NEUTRAL_LABELS

    @property
    def key(self) -> str:
        """ "F1" for a finding, "S1" for a statement."""
        return f"{'S' if self.statement else 'F'}{self.number}"

    @property
    def name(self) -> str:
        return "Statement" if self.statement else codes.finding_name(self.finding.label)

    @property
    def tracking_id(self) -> str:
        """A tracking identifier a person can read, e.g. "F1 pleural effusion", "S1 statement"."""
        return f"{self.key} {self.name.lower()}"

    def clue_tracking_id(self, index: int) -> str:
        """e.g. "F1 clue 2" (``index`` starts at 1)."""
        return f"{self.key} clue {index}"

    @property
    def label_text(self) -> str:
        """The short label drawn on the image, e.g. "F1 Pleural effusion (possible)"."""
        suffix = " (possible)" if self.finding.uncertain else ""
        return f"{self.key} {self.name}{suffix}"

    @property
    def sentence(self) -> str:
        """The model's sentence, with "(possible)" added when it is hedged and does not say so."""
        text = " ".join(self.finding.text.split())
        if self.finding.uncertain and "possib" not in text.lower():
            text = f"{text} (possible)"
        return text

    @property
    def comment(self) -> str:
        """What a viewer shows as the group's label, e.g. "F1: Small left pleural effusion."."""
        return f"{self.key}: {self.sentence}"

    def clue_comment(self, index: int) -> str:
        """e.g. "F1 visual clue 2: Small left pleural effusion."."""
        return f"{self.key} visual clue {index}: {self.sentence}"


@dataclass(frozen=True)
class ImageWork:
    """One analysed source image and its cleaned analysis."""

    number: int
    analysis: ImageAnalysis
    source: Dataset
    original: Dataset
    present: tuple[PlacedFinding, ...]
    absent: tuple[Finding, ...]
    trajectory: tuple[Fixation, ...]
    dropped: int
    statements: tuple[PlacedFinding, ...] = ()

    @property
    def omissions(self) -> tuple[str, ...]:
        """What was cut or dropped from this image's analysis, by the runtime and by the encoder."""
        lost = tuple(self.analysis.omissions)
        if self.dropped:
            lost += (f"{self.dropped} box(es) or fixation(s) outside the image were dropped",)
        return lost

    @property
    def sop_instance_uid(self) -> str:
        return str(self.source.SOPInstanceUID)

    @property
    def sop_class_uid(self) -> str:
        return str(self.source.SOPClassUID)

    @property
    def rows(self) -> int:
        return int(self.source.Rows)

    @property
    def columns(self) -> int:
        return int(self.source.Columns)

    @property
    def all_clues(self) -> tuple[Box, ...]:
        """Clue boxes of every finding, present or absent, clipped; for the attention density."""
        boxes: list[Box] = []
        for finding in self.analysis.findings:
            for clue in finding.clues:
                clipped = clip_box(clue.box, self.rows, self.columns)
                if clipped is not None:
                    boxes.append(clipped)
        return tuple(boxes)


@dataclass(frozen=True)
class EncodeContext:
    """Everything one encoding needs, checked and cleaned."""

    analysis: StudyAnalysis
    images: tuple[ImageWork, ...]
    unanalysed: tuple[str, ...]
    analysis_id: str
    when: datetime.datetime
    settings: EncodeSettings
    uids: UidFactory
    predecessor: Predecessor | None
    encodings: tuple[str, ...]

    @property
    def model(self) -> ModelIdentity:
        return self.analysis.model

    @property
    def study_instance_uid(self) -> str:
        return self.analysis.study_instance_uid

    @property
    def sources(self) -> list[Dataset]:
        return [image.source for image in self.images]

    @property
    def complete(self) -> bool:
        """True when every source was analysed and nothing of the analysis was cut or dropped."""
        return not self.unanalysed and not any(image.omissions for image in self.images)

    def incomplete_reason(self) -> str:
        """Why the SR is PARTIAL, for its Completion Flag Description (LO)."""
        reasons = []
        if any(image.omissions for image in self.images):
            reasons.append("output cut or dropped, see Findings")
        if self.unanalysed:
            reasons.append(f"{len(self.unanalysed)} image(s) not analysed")
        return "; ".join(reasons)

    @property
    def disclaimer(self) -> str:
        """The notice shown wherever a person reads our output: :data:`DEMO_NOTICE` for a demo model."""
        return DEMO_NOTICE if self.model.demo else DISCLAIMER

    def series_description(self, kind: str) -> str:
        """Series Description of an output kind; it names a demo model first."""
        if self.model.demo:
            return f"{DEMO_NOTICE}: {DEMO_SERIES_DESCRIPTIONS[kind]}"
        return SERIES_DESCRIPTIONS[kind]

    @property
    def device_uid(self) -> str:
        return self.uids.device_uid(self.model)

    def text(self, value: str, *, max_length: int | None = None, single_line: bool = False) -> str:
        return encodable_text(value, self.encodings, max_length=max_length, single_line=single_line)

    def algorithm_parameters(self) -> list[str]:
        return [
            f"checkpoint_sha256={self.model.checkpoint_sha256}",
            f"backend={self.model.backend}",
            f"analysis_id={self.analysis_id}",
        ]

    def content_description(self) -> str:
        """For SEG/GSPS (LO): which analysis this is, and which one it supersedes."""
        text = f"GazeX analysis {self.analysis_id}"
        if self.predecessor is not None:
            text += f", supersedes {self.predecessor.analysis_id}"
        return self.text(text, max_length=64, single_line=True)

    def contributing_equipment(self) -> list[hd.ContributingEquipment]:
        """IHE AIR: the model as Processing Equipment with manufacturer, model, version, device UID."""
        item = hd.ContributingEquipment(
            manufacturer=self.text(self.model.manufacturer, max_length=64, single_line=True),
            purpose_of_reference=dcm_codes.DCM.ProcessingEquipment,
            manufacturer_model_name=self.text(self.model.name, max_length=64, single_line=True),
            software_versions=self.text(self.model.version, max_length=64, single_line=True),
            contribution_datetime=self.when,
            contribution_description=self.text(
                f"GazeX model inference (backend {self.model.backend}, "
                f"checkpoint sha256 {self.model.checkpoint_sha256})",
                max_length=1024,
                single_line=True,
            ),
        )
        # Device UID is in the Contributing Equipment Sequence of the current PS3.3 SOP Common
        # module (Type 3; highdicom's tables of the standard list it); the dicom3tools release
        # installed here predates it and warns "not present in standard DICOM IOD".
        item.DeviceUID = self.device_uid
        return [item]

    @property
    def equipment(self) -> Equipment:
        """General/Enhanced General Equipment of our outputs, encodable in the character set."""
        settings = self.settings

        def lo(value: str | None) -> str | None:
            return None if not value else self.text(value, max_length=64, single_line=True)

        return Equipment(
            manufacturer=lo(settings.manufacturer) or "",
            model_name=lo(settings.model_name) or "",
            software_version=lo(settings.software_version) or "",
            serial_number=lo(settings.device_serial_number) or UNREGISTERED_SERIAL_NUMBER,
            institution_name=lo(settings.institution_name),
            department_name=lo(settings.institutional_department_name) if settings.institution_name else None,
        )


@dataclass(frozen=True, slots=True)
class Equipment:
    manufacturer: str
    model_name: str
    software_version: str
    serial_number: str
    institution_name: str | None
    department_name: str | None


def clip_box(box: Box, rows: int, columns: int) -> Box | None:
    """``box`` clipped to the image, or None when nothing of positive area is left."""
    clipped = box.clipped(rows, columns)
    if clipped.width <= 0 or clipped.height <= 0:
        return None
    return clipped


def _da(when: datetime.datetime) -> str:
    return when.strftime("%Y%m%d")


def _tm(when: datetime.datetime) -> str:
    return when.strftime("%H%M%S.%f") if when.microsecond else when.strftime("%H%M%S")


def _dt(when: datetime.datetime) -> str:
    return _da(when) + _tm(when)


def _walk_uses_scheme(dataset: Dataset, designator: str) -> bool:
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                if _walk_uses_scheme(item, designator):
                    return True
        elif element.keyword == "CodingSchemeDesignator" and element.value == designator:
            return True
    return False


def copy_series_anatomy(dataset: Dataset, source: Dataset, *, unknown_laterality_empty: bool = False) -> None:
    """Copy Body Part Examined and Laterality (General Series) from the source.

    Laterality is Type 2C, required when the body part is paired.  With
    ``unknown_laterality_empty``, a source that names neither body part nor laterality gives
    an empty Laterality (PS3.3 allows it when laterality is unknown): dciodvfy requires it
    in a GSPS, and in an SC image, and refuses it in a SEG.
    """
    if source.get("BodyPartExamined"):
        dataset.BodyPartExamined = source.BodyPartExamined
    if source.get("Laterality"):
        dataset.Laterality = source.Laterality
    elif unknown_laterality_empty and not source.get("BodyPartExamined"):
        dataset.Laterality = ""


def plain_dataset(dataset: Dataset) -> Dataset:
    """A plain pydicom Dataset with the same elements and file meta (no copy of the values).

    Our outputs are handed over as plain datasets: the highdicom objects keep internal state
    (parsed content trees, frame indexes) that would not follow the changes made after their
    construction.
    """
    plain = Dataset()
    plain.update(dataset)
    plain.file_meta = dataset.file_meta
    plain.preamble = b"\x00" * 128  # so that even a plain save_as() writes a DICOM Part 10 file
    return plain


def finalize(dataset: Dataset, ctx: EncodeContext, kind: str, series_description: str) -> Dataset:
    """Pin what highdicom fills from the clock or at random, and add what every output carries.

    highdicom sets creation dates and times from ``datetime.now()`` and the SEG dimension
    organisation UID at random; both are replaced here so that an encoding is a pure function
    of its inputs and ``content_datetime``.
    """
    date, time = _da(ctx.when), _tm(ctx.when)
    dataset.InstanceCreationDate = date
    dataset.InstanceCreationTime = time
    dataset.SeriesDate = date
    dataset.SeriesTime = time
    if "ContentDate" in dataset:
        dataset.ContentDate = date
        dataset.ContentTime = time
    if "PresentationCreationDate" in dataset:
        dataset.PresentationCreationDate = date
        dataset.PresentationCreationTime = time
    if "DateOfSecondaryCapture" in dataset:
        dataset.DateOfSecondaryCapture = date
        dataset.TimeOfSecondaryCapture = time
    for item in dataset.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item and item.get("Manufacturer") == "Highdicom open-source contributors":
            item.ContributionDateTime = _dt(ctx.when)
    if "DimensionOrganizationSequence" in dataset:
        dimension_uid = ctx.uids.uid(kind, "dimension-organization", str(dataset.SOPInstanceUID))
        for item in dataset.DimensionOrganizationSequence:
            item.DimensionOrganizationUID = dimension_uid
        for item in dataset.get("DimensionIndexSequence", []):
            item.DimensionOrganizationUID = dimension_uid
    if ctx.model.demo:
        series_description = ctx.series_description(kind)
    dataset.SeriesDescription = ctx.text(series_description, max_length=64, single_line=True)
    if _walk_uses_scheme(dataset, codes.PRIVATE_SCHEME):
        dataset.CodingSchemeIdentificationSequence = codes.coding_scheme_identification()
    _detach_from_sources(dataset, ctx)
    return dataset if type(dataset) is Dataset else plain_dataset(dataset)


def _detach_from_sources(dataset: Dataset, ctx: EncodeContext) -> None:
    """Give ``dataset`` its own copy of every top-level element it shares with a source.

    highdicom copies the patient and study modules by adding the source's element objects, so
    a change to an output would otherwise change the caller's source dataset (and the other
    outputs).  Only those few elements are copied.
    """
    shared = {id(element) for image in ctx.images for element in image.original}
    for element in list(dataset):
        if id(element) in shared:
            dataset[element.tag] = copy.deepcopy(element)
