"""Checking and cleaning the inputs of an encoding: every bad-input decision lives here.

:func:`prepare` turns ``(analysis, sources, ...)`` into an :class:`EncodeContext` or raises
:class:`EncodeError`, so the SR, SEG and GSPS builders see the same cleaned findings, boxes
and trajectory.  The outcomes:

- sources from another study, a source without a Type 1 attribute we reference (UIDs, Rows,
  Columns), a multi-frame source, a source given twice, an analysed image that is not among
  the sources or whose size differs from it, an analysis with no images, an empty or overlong
  analysis id, a predecessor from another study or with our own analysis id: ``EncodeError``;
- a source that was not analysed: referenced nowhere, and the SR's Completion Flag is PARTIAL;
- a box partly outside the image: clipped to it;
- a box wholly outside the image or of zero area, a fixation outside the image: dropped,
  counted, logged (UIDs and counts only), and the SR's Completion Flag is PARTIAL;
- a zero or malformed Pixel Spacing / Imager Pixel Spacing: removed from our copy of the
  source header, so it never reaches an output;
- missing Type 2 patient/study attributes: copied as empty values;
- no Body Part Examined / Patient Orientation: those descriptors are left out of the SR's
  image library, and the SEG/GSPS/SC carry them empty (see ``copy_series_anatomy``).
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Iterable, Sequence

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from dicom_sr.codes import NEUTRAL_LABELS
from dicom_sr.common import (
    EncodeContext,
    EncodeError,
    EncodeSettings,
    ImageWork,
    PlacedFinding,
    Predecessor,
    charset_encodings,
    clip_box,
)
from dicom_sr.uids import UidFactory
from inference.results import Box, Finding, ImageAnalysis, Point, StudyAnalysis

logger = logging.getLogger(__name__)

MAX_ANALYSIS_ID_LENGTH = 40

_REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Rows", "Columns")
_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_BULK_TAGS = frozenset(
    int(Tag(t))
    for t in (
        (0x7FE0, 0x0010),  # Pixel Data
        (0x7FE0, 0x0008),  # Float Pixel Data
        (0x7FE0, 0x0009),  # Double Float Pixel Data
        (0xFFFC, 0xFFFC),  # Data Set Trailing Padding
    )
)


def source_header(dataset: Dataset) -> Dataset:
    """A copy of a source's attributes without its pixels, fit to derive outputs from.

    It shares element objects with ``dataset`` (no deep copy) and never modifies them: it only
    leaves elements out or adds new ones.
    """
    header = Dataset()
    for element in dataset:
        tag = int(element.tag)
        if tag in _BULK_TAGS or (0x6000 <= (tag >> 16) <= 0x60FF and (tag & 0xFFFF) == 0x3000):
            continue
        header.add(element)
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in header and not valid_spacing(header[keyword].value):
            del header[keyword]
    for keyword in _TYPE2_COPIED:
        if keyword not in header or header[keyword].value is None:
            setattr(header, keyword, "")
    return header


def valid_spacing(value: object) -> bool:
    """True for two finite, positive numbers (row spacing, column spacing)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return False
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return False
    return len(values) == 2 and all(math.isfinite(v) and v > 0 for v in values)


def point_inside(point: Point, rows: int, columns: int) -> bool:
    return 0.0 <= point.x <= columns and 0.0 <= point.y <= rows


def _check_arguments(analysis: StudyAnalysis, sources: Sequence[Dataset], analysis_id: str) -> None:
    if not isinstance(analysis_id, str) or not analysis_id.strip():
        raise EncodeError('Argument "analysis_id" must be a non-empty string (e.g. the job id of the analysis).')
    if len(analysis_id) > MAX_ANALYSIS_ID_LENGTH:
        raise EncodeError(
            f'Argument "analysis_id" must be at most {MAX_ANALYSIS_ID_LENGTH} characters, got {len(analysis_id)}.'
        )
    if not analysis.images:
        raise EncodeError(
            f"The analysis of study {analysis.study_instance_uid} has no images; there is nothing to encode."
        )
    if not sources:
        raise EncodeError("No source images were given; pass the datasets the analysis was made from.")


def _check_sources(analysis: StudyAnalysis, sources: Sequence[Dataset]) -> dict[str, Dataset]:
    """The sources by SOP Instance UID, each checked."""
    by_uid: dict[str, Dataset] = {}
    for position, dataset in enumerate(sources, start=1):
        missing = [k for k in _REQUIRED if k not in dataset or dataset[k].value in (None, "")]
        if missing:
            where = dataset.get("SOPInstanceUID", f"#{position}")
            raise EncodeError(
                f"Source {where} lacks the required attribute(s) {', '.join(missing)}; "
                "it cannot be referenced by the outputs. Fix the sending modality or leave the image out."
            )
        sop_uid = str(dataset.SOPInstanceUID)
        if str(dataset.StudyInstanceUID) != analysis.study_instance_uid:
            raise EncodeError(
                f"Source {sop_uid} belongs to study {dataset.StudyInstanceUID}, but the analysis is of study "
                f"{analysis.study_instance_uid}; encode one study at a time."
            )
        if sop_uid in by_uid:
            raise EncodeError(f"Source {sop_uid} was given twice; pass each image once.")
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        if frames != 1:
            raise EncodeError(f"Source {sop_uid} has {frames} frames; only single-frame radiographs are supported.")
        by_uid[sop_uid] = dataset
    return by_uid


def _check_analysis(analysis: StudyAnalysis, sources: dict[str, Dataset]) -> None:
    seen: set[str] = set()
    for image in analysis.images:
        uid = image.sop_instance_uid
        if uid in seen:
            raise EncodeError(f"The analysis has image {uid} twice; each image is analysed once.")
        seen.add(uid)
        source = sources.get(uid)
        if source is None:
            raise EncodeError(
                f"The analysis covers image {uid}, which is not among the sources; pass the dataset it was made from."
            )
        if (int(source.Rows), int(source.Columns)) != (image.rows, image.columns):
            raise EncodeError(
                f"The analysis of image {uid} is for {image.rows} x {image.columns} pixels, "
                f"but the source has {source.Rows} x {source.Columns}; its coordinates would be misplaced."
            )


def _check_predecessor(analysis: StudyAnalysis, analysis_id: str, predecessor: Predecessor | None) -> None:
    if predecessor is None:
        return
    if predecessor.analysis_id == analysis_id:
        raise EncodeError(f"Analysis {analysis_id} cannot supersede itself; give the new analysis its own id.")
    for ref in predecessor.instances:
        if ref.study_instance_uid != analysis.study_instance_uid:
            raise EncodeError(
                f"Predecessor instance {ref.sop_instance_uid} belongs to study {ref.study_instance_uid}, "
                f"not to {analysis.study_instance_uid}; only outputs of the same study can be superseded."
            )


def _same_box(a: Box, b: Box) -> bool:
    return max(abs(a.x0 - b.x0), abs(a.y0 - b.y0), abs(a.x1 - b.x1), abs(a.y1 - b.y1)) < 1e-6


def _place_finding(finding: Finding, number: int, image: ImageAnalysis, uids: UidFactory) -> tuple[PlacedFinding, int]:
    """A present finding or statement with its boxes clipped, and how many boxes had to be dropped.

    A visual clue with the same box as the observation, or as an earlier clue, is left out: it
    adds no evidence, and a viewer would draw two boxes exactly on top of each other.  That is
    not a loss, so it is not counted as dropped.
    """
    dropped = 0
    observation = None
    if finding.observation is not None:
        observation = clip_box(finding.observation.box, image.rows, image.columns)
        dropped += observation is None
    clues: list[Box] = []
    for clue in finding.clues:
        clipped = clip_box(clue.box, image.rows, image.columns)
        if clipped is None:
            dropped += 1
        elif not any(_same_box(clipped, seen) for seen in ([observation] if observation else []) + clues):
            clues.append(clipped)
    sop = image.sop_instance_uid
    key = f"{'S' if finding.label in NEUTRAL_LABELS else 'F'}{number}"
    placed = PlacedFinding(
        number=number,
        finding=finding,
        observation=observation,
        clues=tuple(clues),
        tracking_uid=uids.uid("tracking", sop, key),
        clue_tracking_uids=tuple(uids.uid("tracking", sop, key, "clue", str(k)) for k in range(1, len(clues) + 1)),
    )
    return placed, dropped


def _place_image(
    image: ImageAnalysis,
    image_number: int,
    first_numbers: tuple[int, int],
    source: Dataset,
    analysis_id: str,
    uids: UidFactory,
) -> ImageWork:
    """``first_numbers``: the numbers of the image's first finding and first statement."""
    dropped = 0
    present: list[PlacedFinding] = []
    statements: list[PlacedFinding] = []
    absent: list[Finding] = []
    for finding in image.findings:
        if not finding.present:
            if finding.label not in NEUTRAL_LABELS:
                absent.append(finding)
            continue
        if finding.label in NEUTRAL_LABELS:
            placed, lost = _place_finding(finding, first_numbers[1] + len(statements), image, uids)
            statements.append(placed)
        else:
            placed, lost = _place_finding(finding, first_numbers[0] + len(present), image, uids)
            present.append(placed)
        dropped += lost
    ordered = sorted(image.trajectory, key=lambda fixation: fixation.index)
    trajectory = tuple(f for f in ordered if point_inside(f.point, image.rows, image.columns))
    dropped += len(ordered) - len(trajectory)
    if dropped:
        logger.warning(
            "analysis %s, image %s: dropped %d box(es) or fixation(s) lying outside the %d x %d image",
            analysis_id,
            image.sop_instance_uid,
            dropped,
            image.rows,
            image.columns,
        )
    return ImageWork(
        number=image_number,
        analysis=image,
        source=source_header(source),
        original=source,
        present=tuple(present),
        absent=tuple(absent),
        trajectory=trajectory,
        dropped=dropped,
        statements=tuple(statements),
    )


def prepare(
    analysis: StudyAnalysis,
    sources: Sequence[Dataset],
    *,
    analysis_id: str,
    content_datetime: datetime.datetime | None,
    settings: EncodeSettings,
    predecessor: Predecessor | None,
) -> EncodeContext:
    """Check the inputs and build the :class:`EncodeContext`; raises :class:`EncodeError`."""
    _check_arguments(analysis, sources, analysis_id)
    by_uid = _check_sources(analysis, sources)
    _check_analysis(analysis, by_uid)
    _check_predecessor(analysis, analysis_id, predecessor)
    uids = UidFactory(
        analysis.study_instance_uid,
        (image.sop_instance_uid for image in analysis.images),
        analysis.model,
        analysis_id,
        installation_id=settings.installation_id,
        root=settings.uid_root,
    )
    images: list[ImageWork] = []
    next_finding = next_statement = 1
    for number, image in enumerate(analysis.images, start=1):
        work = _place_image(
            image, number, (next_finding, next_statement), by_uid[image.sop_instance_uid], analysis_id, uids
        )
        next_finding += len(work.present)
        next_statement += len(work.statements)
        images.append(work)
    analysed = {image.sop_instance_uid for image in analysis.images}
    return EncodeContext(
        analysis=analysis,
        images=tuple(images),
        unanalysed=tuple(uid for uid in by_uid if uid not in analysed),
        analysis_id=analysis_id,
        when=content_datetime if content_datetime is not None else datetime.datetime.now(),
        settings=settings,
        uids=uids,
        predecessor=predecessor,
        encodings=charset_encodings(images[0].source),
    )
