"""The TID 1500 Imaging Measurement Report (Comprehensive 3D SR), per IHE AI Results.

Content tree (one SR for the study)::

    CONTAINER (126000, DCM, "Imaging Measurement Report")  [TID 1500]
      HAS CONCEPT MOD  Language of content = en-US
      HAS OBS CONTEXT  Observer Type = Device; Device Observer UID/Name/Manufacturer/Model Name
      HAS CONCEPT MOD  Procedure reported = the source's Procedure Code, else "Plain radiography"
      CONTAINS         Image Library: one entry per analysed source image
      CONTAINS         CONTAINER Imaging Measurements
        per present finding:   TID 1410 group "F1 pleural effusion" (tracking UID), Finding = code,
                               Algorithm Identification (TID 4019), closed 5-point POLYLINE box,
                               [Certainty of Finding = Suspected], TEXT Finding = the sentence,
                               TEXT Comment = "F1: <sentence>" (what a viewer labels the box with)
                               (TID 1501 without a region when the model gave no usable box)
        per visual clue:       TID 1410 group "F1 clue 2", Finding = Visual clue region, box,
                               Comment "F1 visual clue 2: <sentence>" (repeated boxes left out)
        per statement:         TID 1410 group "S1 statement", evidence box, Comment "S1: <sentence>",
                               no Finding code: a normal or unlabelled sentence is not a finding
        per image trajectory:  TID 1410 group "<OHIF prefix>Inspection trajectory", open POLYLINE
                               of the fixations in reading order (POINT for one), Comment
                               "Inspection trajectory, N fixations"
      CONTAINS         CONTAINER Qualitative Evaluations  [TID 1500 rows 12-14]
        per absent finding:    CODE <finding> = Absent
        per image:             TEXT Findings = the report, in reading order, and what was cut from it

No TCOORD is written: a TCOORD selects sample positions, time offsets or date-times within its
referenced object (PS3.3 C.18.7), and a single-frame radiograph has no temporal axis, nor do
our fixations carry times, so any TCOORD would reference nothing.  The order of the fixations
is the order of the polyline's points.
"""

from __future__ import annotations

from collections.abc import Collection

import highdicom as hd
import numpy as np
import numpy.typing as npt
from highdicom.sr import (
    AlgorithmIdentification,
    CodeContentItem,
    ContainerContentItem,
    ContentItem,
    ContentSequence,
    DeviceObserverIdentifyingAttributes,
    ImageContentItem,
    ImageRegion,
    LanguageOfContentItemAndDescendants,
    MeasurementsAndQualitativeEvaluations,
    NumContentItem,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    RelationshipTypeValues,
    SourceImageForMeasurementGroup,
    SourceImageForRegion,
    TextContentItem,
    TrackingIdentifier,
    UIDRefContentItem,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.sr.coding import Code
from pydicom.uid import Comprehensive3DSRStorage

from dicom_sr import codes
from dicom_sr.common import SERIES_DESCRIPTIONS, EncodeContext, ImageWork, PlacedFinding, finalize, plain_dataset
from inference.results import Box

_LANGUAGE = hd.sr.CodedConcept("en-US", "RFC5646", "English (United States)")
_SR_CLASSES_SUPERSEDED = {Comprehensive3DSRStorage}

Group = PlanarROIMeasurementsAndQualitativeEvaluations | MeasurementsAndQualitativeEvaluations


def box_polyline(box: Box) -> npt.NDArray[np.float64]:
    """The closed 5-point POLYLINE of a box, as (column, row) pairs."""
    return np.array([[p.x, p.y] for p in box.closed_polyline()], dtype=np.float64)


def _algorithm(ctx: EncodeContext) -> AlgorithmIdentification:
    return AlgorithmIdentification(
        name=ctx.text(ctx.model.name, single_line=True),
        version=ctx.text(ctx.model.version, single_line=True),
        parameters=[ctx.text(p, single_line=True) for p in ctx.algorithm_parameters()],
        family=codes.ALGORITHM_FAMILY,
        manufacturer=ctx.text(ctx.model.manufacturer, single_line=True),
    )


def _region(image: ImageWork, graphic_type: str, points: npt.NDArray[np.float64]) -> ImageRegion:
    return ImageRegion(
        graphic_type=graphic_type,
        graphic_data=points,
        source_image=SourceImageForRegion(image.sop_class_uid, image.sop_instance_uid),
    )


def _text(name: Code, value: str) -> TextContentItem:
    return TextContentItem(name=name, value=value, relationship_type=RelationshipTypeValues.CONTAINS)


def _comment(ctx: EncodeContext, text: str) -> TextContentItem:
    """The group's (121106, DCM, "Comment"): the label a viewer such as OHIF shows for it."""
    notice = f"{ctx.disclaimer}: " if ctx.model.demo else ""
    return _text(codes.COMMENT, ctx.text(notice + text))


def _add_to_group(group: Group, item: ContentItem) -> None:
    group[0].ContentSequence.append(item)


def _finding_groups(
    ctx: EncodeContext, image: ImageWork, placed: PlacedFinding, algorithm: AlgorithmIdentification
) -> list[Group]:
    """The groups of a present finding (or a statement) and of its visual clues.

    A finding's group carries its code, its sentence as TEXT Finding and as the Comment a
    viewer labels the box with.  A statement's group carries no Finding code (it is not a
    finding) and only the Comment; without an evidence box it has no group of its own, as the
    report text already holds it.
    """
    tracking = TrackingIdentifier(uid=placed.tracking_uid, identifier=ctx.text(placed.tracking_id))
    groups: list[Group] = []
    if placed.statement:
        if placed.observation is not None:
            statement = PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_region=_region(image, "POLYLINE", box_polyline(placed.observation)),
                algorithm_id=algorithm,
            )
            _add_to_group(statement, _comment(ctx, placed.comment))
            groups.append(statement)
    else:
        code = codes.finding_code(placed.finding.label)
        evaluations = (
            [QualitativeEvaluation(codes.CERTAINTY_OF_FINDING, codes.SUSPECTED)] if placed.finding.uncertain else None
        )
        group: Group
        if placed.observation is not None:
            group = PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_region=_region(image, "POLYLINE", box_polyline(placed.observation)),
                finding_type=code,
                algorithm_id=algorithm,
                qualitative_evaluations=evaluations,
            )
        else:
            group = MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                finding_type=code,
                algorithm_id=algorithm,
                qualitative_evaluations=evaluations,
                source_images=[SourceImageForMeasurementGroup(image.sop_class_uid, image.sop_instance_uid)],
            )
        _add_to_group(group, _text(codes.FINDING, ctx.text(placed.finding.text)))
        _add_to_group(group, _comment(ctx, placed.comment))
        groups.append(group)
    for index, (clue, uid) in enumerate(zip(placed.clues, placed.clue_tracking_uids, strict=True), start=1):
        clue_group = PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=uid, identifier=placed.clue_tracking_id(index)),
            referenced_region=_region(image, "POLYLINE", box_polyline(clue)),
            finding_type=codes.VISUAL_CLUE,
            algorithm_id=algorithm,
        )
        _add_to_group(clue_group, _comment(ctx, placed.clue_comment(index)))
        groups.append(clue_group)
    return groups


#: The start of a Tracking Identifier that tells OHIF (Cornerstone3D's SR adapters) to track a
#: group as an open freehand contour.  OHIF 3.13 tracks a group whose identifier has no such
#: prefix only by its shape (a 4/5-point POLYLINE as a rectangle, a POINT as a probe) and
#: silently leaves any other POLYLINE out; OHIF writes these prefixes in its own SRs.
OHIF_OPEN_PATH_PREFIX = "Cornerstone3DTools@^0.1.0:PlanarFreehandROI:"


def trajectory_tracking_id(ctx: EncodeContext, image: ImageWork) -> str:
    base = "Inspection trajectory"
    return base if len(ctx.images) == 1 else f"{base}, image {image.number}"


def trajectory_label(ctx: EncodeContext, image: ImageWork) -> str:
    """e.g. "Inspection trajectory, 31 fixations" (", image 2" when the study has several)."""
    count = len(image.trajectory)
    return f"{trajectory_tracking_id(ctx, image)}, {count} fixation{'s' if count != 1 else ''}"


def _trajectory_groups(ctx: EncodeContext, image: ImageWork, algorithm: AlgorithmIdentification) -> list[Group]:
    """One TID 1410 group: the fixations in reading order, as an open POLYLINE (a POINT for one).

    The order of the points is the order of the fixations; the per-fixation NUM items of
    earlier versions are gone, as they made OHIF drop the report when it was tracked.  The
    Tracking Identifier of a path starts with :data:`OHIF_OPEN_PATH_PREFIX`, so that OHIF keeps it
    when the report is tracked; the Comment is the label a radiologist reads.
    """
    if not image.trajectory:
        return []
    points = np.array([[f.point.x, f.point.y] for f in image.trajectory], dtype=np.float64)
    identifier = trajectory_tracking_id(ctx, image)
    group = PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=ctx.uids.uid("tracking", image.sop_instance_uid, "trajectory"),
            identifier=(OHIF_OPEN_PATH_PREFIX + identifier) if len(points) >= 2 else identifier,
        ),
        referenced_region=_region(image, "POLYLINE" if len(points) >= 2 else "POINT", points),
        finding_type=codes.INSPECTION_TRAJECTORY,
        algorithm_id=algorithm,
    )
    _add_to_group(group, _comment(ctx, trajectory_label(ctx, image)))
    return [group]


def _coded_modality(modality: str) -> Code:
    for name in dcm_codes.cid29.dir():
        code: Code = getattr(dcm_codes.cid29, name)
        if code.value == modality:
            return code
    return Code(modality or "OT", "DCM", modality or "Other")


def _pixel_spacing(source: Dataset) -> list[float] | None:
    for keyword in ("ImagerPixelSpacing", "PixelSpacing"):  # source_header() removed invalid ones
        if keyword in source:
            return [float(v) for v in source[keyword].value]
    return None


def _image_library(ctx: EncodeContext) -> ContainerContentItem:
    """TID 1600 Image Library with TID 1602/1603 descriptors of each analysed image.

    Written here rather than with ``highdicom.sr.ImageLibrary``, which requires Patient
    Orientation and Imager Pixel Spacing on every projection radiograph (a CR has Pixel
    Spacing instead, and our sources may lack either), while TID 1603 makes both optional.
    """
    pixels = Code("{pixels}", "UCUM", "Pixels")
    group = ContainerContentItem(
        name=dcm_codes.DCM.ImageLibraryGroup, relationship_type=RelationshipTypeValues.CONTAINS
    )
    group.ContentSequence = ContentSequence()
    for image in ctx.images:
        source = image.source
        entry = ImageContentItem(
            name=dcm_codes.SCT.Source,
            referenced_sop_class_uid=image.sop_class_uid,
            referenced_sop_instance_uid=image.sop_instance_uid,
            relationship_type=RelationshipTypeValues.CONTAINS,
        )
        acquisition = RelationshipTypeValues.HAS_ACQ_CONTEXT
        descriptors: list[ContentItem] = [
            CodeContentItem(dcm_codes.DCM.Modality, _coded_modality(str(source.get("Modality", ""))), acquisition)
        ]
        if "FrameOfReferenceUID" in source:
            descriptors.append(
                UIDRefContentItem(dcm_codes.DCM.FrameOfReferenceUID, source.FrameOfReferenceUID, acquisition)
            )
        descriptors.append(
            NumContentItem(dcm_codes.DCM.PixelDataRows, image.rows, pixels, relationship_type=acquisition)
        )
        descriptors.append(
            NumContentItem(dcm_codes.DCM.PixelDataColumns, image.columns, pixels, relationship_type=acquisition)
        )
        if str(source.get("BodyPartExamined", "")).upper() == "CHEST":
            descriptors.append(CodeContentItem(dcm_codes.DCM.TargetRegion, dcm_codes.SCT.Chest, acquisition))
        orientation = list(source.get("PatientOrientation", []) or [])
        if len(orientation) == 2 and all(orientation):
            descriptors.append(TextContentItem(dcm_codes.DCM.PatientOrientationRow, str(orientation[0]), acquisition))
            descriptors.append(
                TextContentItem(dcm_codes.DCM.PatientOrientationColumn, str(orientation[1]), acquisition)
            )
        spacing = _pixel_spacing(source)
        if spacing is not None:
            mm = dcm_codes.UCUM.Millimeter
            descriptors.append(
                NumContentItem(dcm_codes.DCM.HorizontalPixelSpacing, spacing[1], mm, relationship_type=acquisition)
            )
            descriptors.append(
                NumContentItem(dcm_codes.DCM.VerticalPixelSpacing, spacing[0], mm, relationship_type=acquisition)
            )
        entry.ContentSequence = ContentSequence(descriptors)
        group.ContentSequence.append(entry)
    library = ContainerContentItem(name=dcm_codes.DCM.ImageLibrary, relationship_type=RelationshipTypeValues.CONTAINS)
    library.ContentSequence = ContentSequence([group])
    return library


def _report_text(ctx: EncodeContext, image: ImageWork) -> str:
    """The report as the model wrote it, and what was cut from it: a reader must not take a cut
    report for a whole one."""
    report = image.analysis.report.strip()
    if not report:
        report = " ".join(f.text.strip() for f in image.analysis.findings if f.text.strip())
    report = report or "GazeX reported no findings for this image."
    if image.omissions:
        report += " [INCOMPLETE: " + "; ".join(image.omissions) + ".]"
    if ctx.model.demo:
        report = f"{ctx.disclaimer}. {report}"
    return report


def _procedures(ctx: EncodeContext) -> list[hd.sr.CodedConcept]:
    found: dict[tuple[str, str], hd.sr.CodedConcept] = {}
    for source in ctx.sources:
        for item in source.get("ProcedureCodeSequence", []):
            if all(item.get(k) for k in ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")):
                coded = hd.sr.CodedConcept(
                    str(item.CodeValue), str(item.CodingSchemeDesignator), ctx.text(str(item.CodeMeaning))
                )
                found.setdefault((coded.value, coded.scheme_designator), coded)
    return list(found.values()) or [codes.concept(codes.PLAIN_RADIOGRAPHY)]


def _observation_context(ctx: EncodeContext) -> ObservationContext:
    device = DeviceObserverIdentifyingAttributes(
        uid=ctx.device_uid,
        name=ctx.text(f"{ctx.model.name} on {ctx.settings.model_name}", single_line=True),
        manufacturer_name=ctx.text(ctx.model.manufacturer, single_line=True),
        model_name=ctx.text(f"{ctx.model.name} {ctx.model.version}", single_line=True),
        serial_number=ctx.text(ctx.settings.device_serial_number, single_line=True),
    )
    return ObservationContext(
        observer_device_context=ObserverContext(
            observer_type=dcm_codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def content_tree(ctx: EncodeContext) -> ContainerContentItem:
    """The root CONTAINER of the report (see the module docstring)."""
    root = ContainerContentItem(name=dcm_codes.cid7021.ImagingMeasurementReport, template_id="1500")
    content = ContentSequence()
    content.extend(LanguageOfContentItemAndDescendants(_LANGUAGE))
    content.extend(_observation_context(ctx))
    for procedure in _procedures(ctx):
        content.append(
            CodeContentItem(
                name=dcm_codes.DCM.ProcedureReported,
                value=procedure,
                relationship_type=RelationshipTypeValues.HAS_CONCEPT_MOD,
            )
        )
    content.append(_image_library(ctx))

    # One TID 4019 instance, included by every group: its items are shared, not copied.
    algorithm = _algorithm(ctx)
    groups: list[Group] = []
    for image in ctx.images:
        for placed in image.present:
            groups.extend(_finding_groups(ctx, image, placed, algorithm))
        for statement in image.statements:
            groups.extend(_finding_groups(ctx, image, statement, algorithm))
        groups.extend(_trajectory_groups(ctx, image, algorithm))
    if groups:
        measurements = ContainerContentItem(
            name=dcm_codes.DCM.ImagingMeasurements, relationship_type=RelationshipTypeValues.CONTAINS
        )
        measurements.ContentSequence = ContentSequence()
        for group in groups:
            measurements.ContentSequence.extend(group)
        content.append(measurements)

    evaluations = ContainerContentItem(
        name=codes.QUALITATIVE_EVALUATIONS, relationship_type=RelationshipTypeValues.CONTAINS
    )
    evaluations.ContentSequence = ContentSequence()
    for image in ctx.images:
        for finding in image.absent:
            evaluations.ContentSequence.append(
                CodeContentItem(
                    name=codes.finding_code(finding.label),
                    value=codes.ABSENT,
                    relationship_type=RelationshipTypeValues.CONTAINS,
                )
            )
    for image in ctx.images:
        prefix = "" if len(ctx.images) == 1 else f"[Image {image.number}] "
        evaluations.ContentSequence.append(_text(codes.FINDINGS, ctx.text(prefix + _report_text(ctx, image))))
    content.append(evaluations)
    root.ContentSequence = content
    return root


def predecessors(ctx: EncodeContext, sop_classes: Collection[str]) -> list[Dataset] | None:
    """Earlier SR documents of the given SOP classes, as datasets highdicom can reference."""
    if ctx.predecessor is None:
        return None
    found = []
    for ref in ctx.predecessor.instances:
        if ref.sop_class_uid in sop_classes:
            item = Dataset()
            item.StudyInstanceUID = ref.study_instance_uid
            item.SeriesInstanceUID = ref.series_instance_uid
            item.SOPClassUID = ref.sop_class_uid
            item.SOPInstanceUID = ref.sop_instance_uid
            found.append(item)
    return found or None


def build_sr(ctx: EncodeContext) -> Dataset:
    """The Comprehensive 3D SR of the whole analysis.

    highdicom builds the document around a skeleton content tree that holds only the image
    library, and the full tree is put in afterwards.  Given the full tree, highdicom deep-copies
    and re-parses every content item and searches the whole tree for referenced instances,
    which for a typical report (17 groups, 20 fixations) costs more than the whole 0.2 s budget.
    The skeleton references exactly the instances the full tree does (the analysed sources), so
    the evidence sequences highdicom derives from it are the same.
    """
    equipment = ctx.equipment
    tree = content_tree(ctx)
    skeleton = ContainerContentItem(name=dcm_codes.cid7021.ImagingMeasurementReport, template_id="1500")
    skeleton.ContentSequence = ContentSequence([_image_library(ctx)])
    report = hd.sr.Comprehensive3DSR(
        evidence=ctx.sources,
        content=skeleton,
        series_instance_uid=ctx.uids.uid("sr", "series"),
        series_number=ctx.settings.series_numbers.sr,
        sop_instance_uid=ctx.uids.uid("sr", "instance"),
        instance_number=1,
        manufacturer=equipment.manufacturer,
        is_complete=ctx.complete,
        is_final=False,
        is_verified=False,
        previous_versions=predecessors(ctx, _SR_CLASSES_SUPERSEDED),
        contributing_equipment=ctx.contributing_equipment(),
        content_date=ctx.when.date(),
        content_time=ctx.when.time(),
        series_description=SERIES_DESCRIPTIONS["sr"],
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_version,
        device_serial_number=equipment.serial_number,
        institution_name=equipment.institution_name,
        institutional_department_name=equipment.department_name,
    )
    document = plain_dataset(report)
    document.ContentSequence = tree.ContentSequence
    if not ctx.complete:
        document.CompletionFlagDescription = ctx.text(ctx.incomplete_reason(), max_length=64, single_line=True)
    return finalize(document, ctx, "sr", SERIES_DESCRIPTIONS["sr"])
