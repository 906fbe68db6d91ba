"""Grayscale Softcopy Presentation States: the findings and the trajectory as graphics.

One GSPS per analysed image (a GSPS's displayed area, VOI window and presentation LUT apply to
all the images it references, and images of one study may differ in size, window and
photometric interpretation).  Each references its source image and has up to three graphic layers:

- "AI FINDINGS" (yellow): per present finding, a graphic group holding its observation box
  (closed POLYLINE, with the SR's tracking identifier and UID) and its label as a text object
  anchored to the box's top-left corner; plus a disclaimer in display coordinates (the demo
  notice for a demo model, and "INCOMPLETE" when the analysis was cut);
- "AI STATEMENTS" (grey), only when there are any: per statement (a sentence that is not a
  finding, "S1: The trachea is midline.") its evidence box and its sentence;
- "AI TRAJECTORY" (cyan): the inspection trajectory as an open POLYLINE, a small circle at
  each fixation and its index as a text object anchored there.

The source's display window is kept (highdicom copies Window Center/Width or the VOI LUT into
the Softcopy VOI LUT module).  The Presentation LUT is INVERSE for MONOCHROME1 sources: a
presentation state replaces the image's own grey-scale pipeline, and PS3.3 C.11.6.1 has
MONOCHROME1 images displayed as intended only with INVERSE.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from dicom_sr.common import (
    SERIES_DESCRIPTIONS,
    EncodeContext,
    EncodeError,
    ImageWork,
    PlacedFinding,
    copy_series_anatomy,
    finalize,
)
from dicom_sr.sr import box_polyline, trajectory_tracking_id

FINDINGS_LAYER = "AI FINDINGS"
STATEMENTS_LAYER = "AI STATEMENTS"
TRAJECTORY_LAYER = "AI TRAJECTORY"
_FINDINGS_COLOR = hd.color.CIELabColor.from_rgb(255, 210, 0)
_STATEMENTS_COLOR = hd.color.CIELabColor.from_rgb(200, 200, 200)
_TRAJECTORY_COLOR = hd.color.CIELabColor.from_rgb(0, 200, 255)
#: Radius of the circle drawn at each fixation, as a fraction of the longer image side.
FIXATION_RADIUS_FRACTION = 0.006


def _check_grayscale(image: ImageWork) -> None:
    photometric = str(image.source.get("PhotometricInterpretation", ""))
    samples = int(image.source.get("SamplesPerPixel", 1) or 1)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise EncodeError(
            f"Source {image.sop_instance_uid} is {photometric or 'of unknown photometric interpretation'} "
            f"with {samples} sample(s) per pixel; a grayscale presentation state needs a MONOCHROME1 or "
            "MONOCHROME2 image. Leave 'gsps' out of the outputs for colour images."
        )


def _label(ctx: EncodeContext, placed: PlacedFinding) -> str:
    """A finding's short label ("F1 Pleural effusion (possible)"); a statement's sentence ("S1: ...")."""
    text = placed.comment if placed.statement else placed.label_text
    return ctx.text(f"DEMO: {text}" if ctx.model.demo else text, max_length=1024, single_line=True)


def _boxes_annotation(
    ctx: EncodeContext,
    image: ImageWork,
    placed_items: tuple[PlacedFinding, ...],
    layer: hd.pr.GraphicLayer,
    groups: list[hd.pr.GraphicGroup],
    notice: str | None = None,
) -> hd.pr.GraphicAnnotation | None:
    """Each item's observation box with its label, in one graphic group per item; ``notice``
    (the disclaimer) in display coordinates."""
    objects: list[hd.pr.GraphicObject] = []
    texts: list[hd.pr.TextObject] = []
    for placed in placed_items:
        if placed.observation is None:
            continue
        group = hd.pr.GraphicGroup(
            graphic_group_id=len(groups) + 1,
            label=ctx.text(placed.tracking_id, max_length=64, single_line=True),
            description=ctx.text(placed.finding.text, max_length=1024, single_line=True),
        )
        groups.append(group)
        objects.append(
            hd.pr.GraphicObject(
                graphic_type="POLYLINE",
                graphic_data=box_polyline(placed.observation),
                units="PIXEL",
                tracking_id=ctx.text(placed.tracking_id, max_length=64, single_line=True),
                tracking_uid=placed.tracking_uid,
                graphic_group=group,
            )
        )
        texts.append(
            hd.pr.TextObject(
                text_value=_label(ctx, placed),
                units="PIXEL",
                anchor_point=(placed.observation.x0, placed.observation.y0),
                text_justification="LEFT",
                anchor_point_visible=False,
                graphic_group=group,
            )
        )
    if notice is not None:
        texts.append(
            hd.pr.TextObject(
                text_value=ctx.text(f"GazeX: {notice}", max_length=1024, single_line=True),
                units="DISPLAY",
                bounding_box=(0.01, 0.94, 0.70, 0.99),
                text_justification="LEFT",
            )
        )
    if not objects and not texts:
        return None
    return hd.pr.GraphicAnnotation(
        referenced_images=[image.source],
        graphic_layer=layer,
        graphic_objects=objects or None,
        text_objects=texts or None,
    )


def _trajectory_annotation(
    ctx: EncodeContext, image: ImageWork, layer: hd.pr.GraphicLayer, groups: list[hd.pr.GraphicGroup]
) -> hd.pr.GraphicAnnotation | None:
    if not image.trajectory:
        return None
    group = hd.pr.GraphicGroup(
        graphic_group_id=len(groups) + 1,
        label=trajectory_tracking_id(ctx, image),
        description=f"Inspection trajectory: {len(image.trajectory)} fixations in reading order",
    )
    groups.append(group)
    points = np.array([[f.point.x, f.point.y] for f in image.trajectory], dtype=np.float64)
    objects: list[hd.pr.GraphicObject] = []
    if len(points) >= 2:
        objects.append(
            hd.pr.GraphicObject(
                graphic_type="POLYLINE",
                graphic_data=points,
                units="PIXEL",
                tracking_id=trajectory_tracking_id(ctx, image),
                tracking_uid=ctx.uids.uid("tracking", image.sop_instance_uid, "trajectory"),
                graphic_group=group,
            )
        )
    radius = max(2.0, FIXATION_RADIUS_FRACTION * max(image.rows, image.columns))
    texts: list[hd.pr.TextObject] = []
    for fixation in image.trajectory:
        x, y = fixation.point.x, fixation.point.y
        edge_x = x + radius if x + radius <= image.columns else x - radius
        objects.append(
            hd.pr.GraphicObject(
                graphic_type="CIRCLE",
                graphic_data=np.array([[x, y], [edge_x, y]], dtype=np.float64),
                units="PIXEL",
                graphic_group=group,
            )
        )
        texts.append(
            hd.pr.TextObject(
                text_value=str(fixation.index),
                units="PIXEL",
                anchor_point=(x, y),
                text_justification="CENTER",
                anchor_point_visible=False,
                graphic_group=group,
            )
        )
    return hd.pr.GraphicAnnotation(
        referenced_images=[image.source], graphic_layer=layer, graphic_objects=objects, text_objects=texts
    )


def build_one(ctx: EncodeContext, image: ImageWork) -> Dataset:
    """The GSPS of one image."""
    _check_grayscale(image)
    findings_layer = hd.pr.GraphicLayer(
        FINDINGS_LAYER, order=1, description="AI findings", display_color=_FINDINGS_COLOR
    )
    statements_layer = hd.pr.GraphicLayer(
        STATEMENTS_LAYER, order=2, description="AI statements (not findings)", display_color=_STATEMENTS_COLOR
    )
    trajectory_layer = hd.pr.GraphicLayer(
        TRAJECTORY_LAYER, order=3, description="AI trajectory", display_color=_TRAJECTORY_COLOR
    )
    groups: list[hd.pr.GraphicGroup] = []
    notice = ctx.disclaimer if image.present else f"{ctx.disclaimer}; no findings reported"
    if image.omissions:
        notice += "; INCOMPLETE, see the SR"
    findings = _boxes_annotation(ctx, image, image.present, findings_layer, groups, notice)
    if findings is None:  # pragma: no cover - the notice is always there
        raise RuntimeError("the findings layer lost its notice")
    annotations = [findings]
    layers = [findings_layer]
    statements = _boxes_annotation(ctx, image, image.statements, statements_layer, groups)
    if statements is not None:
        annotations.append(statements)
        layers.append(statements_layer)
    trajectory = _trajectory_annotation(ctx, image, trajectory_layer, groups)
    if trajectory is not None:
        annotations.append(trajectory)
        layers.append(trajectory_layer)
    inverse = str(image.source.get("PhotometricInterpretation")) == "MONOCHROME1"
    equipment = ctx.equipment
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[image.source],
        series_instance_uid=ctx.uids.uid("gsps", "series"),
        series_number=ctx.settings.series_numbers.gsps,
        sop_instance_uid=ctx.uids.uid("gsps", "instance", image.sop_instance_uid),
        instance_number=image.number,
        content_label="GAZEX_AI",
        content_description=ctx.content_description(),
        graphic_annotations=annotations,
        graphic_layers=layers,
        graphic_groups=groups or None,
        presentation_lut_transformation=hd.PresentationLUTTransformation(
            presentation_lut_shape="INVERSE" if inverse else "IDENTITY"
        ),
        contributing_equipment=ctx.contributing_equipment(),
        series_description=SERIES_DESCRIPTIONS["gsps"],
        manufacturer=equipment.manufacturer,
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_version,
        device_serial_number=equipment.serial_number,
        institution_name=equipment.institution_name,
        institutional_department_name=equipment.department_name,
    )
    copy_series_anatomy(gsps, image.source, unknown_laterality_empty=True)
    return finalize(gsps, ctx, "gsps", SERIES_DESCRIPTIONS["gsps"])


def build_gsps(ctx: EncodeContext) -> list[Dataset]:
    return [build_one(ctx, image) for image in ctx.images]
