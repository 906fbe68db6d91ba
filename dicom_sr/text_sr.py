"""Optional: a Basic Text SR with the narrative report, for archives that only display text.

Content tree (TID 2000 Basic Diagnostic Imaging Report)::

    CONTAINER (18748-4, LN, "Diagnostic imaging report")
      HAS CONCEPT MOD  Language of content = en-US
      HAS OBS CONTEXT  Observer Type = Device, Device Observer UID/Name/Manufacturer/Model Name
      CONTAINS         CONTAINER (121070, DCM, "Findings")
        per finding, in reading order:  TEXT (121071, DCM, "Finding") = the sentence
                                          INFERRED FROM  IMAGE  the analysed source image
      CONTAINS         TEXT (121106, DCM, "Comment") = that this is an unverified AI draft

highdicom has no Basic Text SR class; its SR base class is used with the Basic Text SR SOP
class, which it supports as a plain content tree.
"""

from __future__ import annotations

import highdicom as hd
from highdicom.sr import (
    CodeContentItem,
    ContainerContentItem,
    ContentItem,
    ContentSequence,
    ImageContentItem,
    LanguageOfContentItemAndDescendants,
    RelationshipTypeValues,
    TextContentItem,
    UIDRefContentItem,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.sr.coding import Code
from pydicom.uid import BasicTextSRStorage

from dicom_sr import codes
from dicom_sr.common import SERIES_DESCRIPTIONS, EncodeContext, finalize
from dicom_sr.sr import predecessors

_LANGUAGE = hd.sr.CodedConcept("en-US", "RFC5646", "English (United States)")
REPORT_TITLE = Code("18748-4", "LN", "Diagnostic imaging report")


def _observer(ctx: EncodeContext) -> list[ContentItem]:
    context = RelationshipTypeValues.HAS_OBS_CONTEXT
    return [
        CodeContentItem(dcm_codes.DCM.ObserverType, dcm_codes.DCM.Device, context),
        UIDRefContentItem(dcm_codes.DCM.DeviceObserverUID, ctx.device_uid, context),
        TextContentItem(
            dcm_codes.DCM.DeviceObserverName,
            ctx.text(f"{ctx.model.name} on {ctx.settings.model_name}", single_line=True),
            context,
        ),
        TextContentItem(dcm_codes.DCM.DeviceObserverManufacturer, ctx.text(ctx.model.manufacturer), context),
        TextContentItem(
            dcm_codes.DCM.DeviceObserverModelName, ctx.text(f"{ctx.model.name} {ctx.model.version}"), context
        ),
    ]


def content_tree(ctx: EncodeContext) -> ContainerContentItem:
    root = ContainerContentItem(name=REPORT_TITLE, template_id="2000")
    content = ContentSequence()
    content.extend(LanguageOfContentItemAndDescendants(_LANGUAGE))
    content.extend(_observer(ctx))
    findings = ContainerContentItem(name=codes.FINDINGS, relationship_type=RelationshipTypeValues.CONTAINS)
    findings.ContentSequence = ContentSequence()
    for image in ctx.images:
        sentences = [f.text.strip() for f in image.analysis.findings if f.text.strip()]
        if not sentences:
            sentences = ["GazeX reported no findings for this image."]
        for sentence in sentences:
            item = TextContentItem(codes.FINDING, ctx.text(sentence), RelationshipTypeValues.CONTAINS)
            item.ContentSequence = ContentSequence(
                [
                    ImageContentItem(
                        name=dcm_codes.DCM.SourceOfMeasurement,
                        referenced_sop_class_uid=image.sop_class_uid,
                        referenced_sop_instance_uid=image.sop_instance_uid,
                        relationship_type=RelationshipTypeValues.INFERRED_FROM,
                    )
                ]
            )
            findings.ContentSequence.append(item)
    content.append(findings)
    for image in ctx.images:
        if image.omissions:  # a reader of the text must not take a cut report for a whole one
            prefix = "" if len(ctx.images) == 1 else f"Image {image.number}: "
            content.append(
                TextContentItem(
                    dcm_codes.DCM.Comment,
                    ctx.text(f"{prefix}INCOMPLETE: " + "; ".join(image.omissions) + "."),
                    RelationshipTypeValues.CONTAINS,
                )
            )
    content.append(
        TextContentItem(
            dcm_codes.DCM.Comment,
            ctx.text(
                f"{ctx.disclaimer}. Draft by {ctx.model.name} {ctx.model.version} (analysis {ctx.analysis_id}); "
                "not verified by a physician."
            ),
            RelationshipTypeValues.CONTAINS,
        )
    )
    root.ContentSequence = content
    return root


def build_text_sr(ctx: EncodeContext) -> Dataset:
    equipment = ctx.equipment
    report = hd.sr.sop._SR(
        evidence=ctx.sources,
        content=content_tree(ctx),
        series_instance_uid=ctx.uids.uid("text_sr", "series"),
        series_number=ctx.settings.series_numbers.text_sr,
        sop_instance_uid=ctx.uids.uid("text_sr", "instance"),
        sop_class_uid=BasicTextSRStorage,
        instance_number=1,
        manufacturer=equipment.manufacturer,
        is_complete=ctx.complete,
        is_final=False,
        is_verified=False,
        previous_versions=predecessors(ctx, {BasicTextSRStorage}),
        contributing_equipment=ctx.contributing_equipment(),
        content_date=ctx.when.date(),
        content_time=ctx.when.time(),
        series_description=SERIES_DESCRIPTIONS["text_sr"],
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_version,
        device_serial_number=equipment.serial_number,
        institution_name=equipment.institution_name,
        institutional_department_name=equipment.department_name,
    )
    return finalize(report, ctx, "text_sr", SERIES_DESCRIPTIONS["text_sr"])
