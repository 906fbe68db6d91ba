"""The GSPS applied to its image by a real presentation-state implementation (dcmtk), against the SR.

What dcmtk's dcmpstat library (``dcmp2pgm``) does with our GSPS, checked with dcmtk 3.6.7:

- it renders the grey-scale pipeline the GSPS sets (Softcopy VOI LUT, Presentation LUT Shape)
  into a bitmap: asserted pixel by pixel against PS3.3 C.11.2.1.2's window function, and from
  the anatomy (lungs darker than the mediastinum, for the MONOCHROME1 CR and the MONOCHROME2 DX);
- it does **not** rasterise graphic or text annotations: ``DVPresentationState::getPixelData``
  renders pixels, shutters and overlays, and hands graphic and text objects to the application
  through its API (OFFIS's DICOMscope drew them in Java).  A render with our annotations and one
  with them removed are byte-identical; a test asserts it, so a dcmtk that starts drawing them
  is noticed.  The same holds for ``dcmpsprt``'s Hardcopy Grayscale Image (checked by hand: it
  renders through the same ``DVPresentationState`` pipeline);
- its presentation-state reader does resolve the annotations for the attached image:
  ``dcmp2pgm --verbose`` dumps, layer by layer, each graphic object (type, units, points) and
  each text object (value, anchor or bounding box) that applies to that image.  The geometry
  tests compare that dump with the SR's SCOORDs: each finding's box, its label's anchor, the
  trajectory's polyline, its fixation circles and their index numbers.

The PNG each geometry test writes under its tmp dir is dcmtk's bitmap with dcmtk's parsed
graphics drawn on it by this test (Pillow), in the layers' recommended colours.  To regenerate
the picture in docs/outputs.md: ``python -m tests.integration.test_gsps_render docs/images/gsps-dcmtk.png``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from dicom_sr import encode
from inference.results import ImageAnalysis
from tests.dicom_sr.helpers import (
    WHEN,
    concept_meaning,
    content_items,
    dcmpschk_report,
    derived_dx,
    hedged_analysis,
    polyline_points,
    study_analysis,
    write,
)

pytestmark = pytest.mark.integration

ToolFinder = Callable[[str], Path]
Points = list[tuple[float, float]]

#: dcmtk prints coordinates with 6 significant digits: at most 0.005 off below 10000 pixels.
PRINTED = 0.05
#: Image regions of the NEMA chest CR (RG1), as fractions of (columns, rows): x0, y0, x1, y1.
RIGHT_LUNG = (0.15, 0.25, 0.35, 0.45)
LEFT_LUNG = (0.62, 0.25, 0.80, 0.45)
MEDIASTINUM = (0.46, 0.30, 0.54, 0.60)


# --- dcmtk: rendering and the presentation-state dump ------------------------------------


@dataclass
class DcmtkText:
    value: str
    anchor: tuple[float, float] | None = None
    anchor_units: str | None = None
    box: tuple[float, float, float, float] | None = None
    box_units: str | None = None


@dataclass
class DcmtkGraphic:
    kind: str
    units: str
    filled: bool
    points: Points = field(default_factory=list)


@dataclass
class DcmtkLayer:
    name: str
    texts: list[DcmtkText] = field(default_factory=list)
    graphics: list[DcmtkGraphic] = field(default_factory=list)


@dataclass
class DcmtkRender:
    bitmap: npt.NDArray[np.uint8]
    window: tuple[float, float] | None
    layers: dict[str, DcmtkLayer]


_LAYER = re.compile(r"^Graphic Layer #\d+ \[(?P<name>.*)\]$")
_TEXT = re.compile(r'^text \d+: "(?P<value>.*)"$')
_ANCHOR = re.compile(r"^anchor point: (?P<x>\S+)\\(?P<y>\S+) units=(?P<units>\w+)")
_BOX = re.compile(r"^bounding box: TLHC=(?P<x0>\S+)\\(?P<y0>\S+) BRHC=(?P<x1>\S+)\\(?P<y1>\S+) units=(?P<units>\w+)")
_GRAPHIC = re.compile(r"^graphic \d+: points=\d+ type=(?P<kind>\w+) filled=(?P<filled>\w+) units=(?P<units>\w+)")
_WINDOW = re.compile(r"^VOI transformation: window center=(?P<center>\S+) width=(?P<width>\S+)")


def parse_dump(log: str) -> tuple[tuple[float, float] | None, dict[str, DcmtkLayer]]:
    """The VOI window and the graphic layers from ``dcmp2pgm --verbose``'s presentation-state dump."""
    window: tuple[float, float] | None = None
    layers: dict[str, DcmtkLayer] = {}
    layer: DcmtkLayer | None = None
    for raw in log.splitlines():
        if not raw.startswith("I: "):
            continue
        line = raw[3:].strip()
        if match := _WINDOW.match(line):
            window = (float(match["center"]), float(match["width"]))
        elif match := _LAYER.match(line):
            layer = layers.setdefault(match["name"], DcmtkLayer(match["name"]))
        elif layer is None:
            continue
        elif match := _TEXT.match(line):
            layer.texts.append(DcmtkText(match["value"]))
        elif match := _ANCHOR.match(line):
            layer.texts[-1].anchor = (float(match["x"]), float(match["y"]))
            layer.texts[-1].anchor_units = match["units"]
        elif match := _BOX.match(line):
            layer.texts[-1].box = (float(match["x0"]), float(match["y0"]), float(match["x1"]), float(match["y1"]))
            layer.texts[-1].box_units = match["units"]
        elif match := _GRAPHIC.match(line):
            layer.graphics.append(DcmtkGraphic(match["kind"], match["units"], match["filled"] == "yes"))
        elif line.startswith("coordinates:"):
            pairs = [p.strip() for p in line.removeprefix("coordinates:").split(",") if p.strip()]
            layer.graphics[-1].points = [(float(x), float(y)) for x, y in (p.split("\\") for p in pairs)]
    return window, layers


def read_pgm(path: Path) -> npt.NDArray[np.uint8]:
    """An 8-bit binary PGM (P5), as dcmp2pgm writes it."""
    data = path.read_bytes()
    header = re.match(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s", data)  # no comments: dcmp2pgm writes none
    assert header is not None and int(header[3]) == 255, f"{path} is not an 8-bit binary PGM"
    width, height = int(header[1]), int(header[2])
    return np.frombuffer(data, dtype=np.uint8, offset=header.end()).reshape(height, width)


def dcmp2pgm(tool: Path, image: Path, pstate: Path, output: Path) -> DcmtkRender:
    """dcmtk's render of ``image`` with the presentation state ``pstate`` applied, and its dump."""
    result = subprocess.run(
        [str(tool), "--verbose", "--pstate", str(pstate), str(image), str(output)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
        check=False,
    )
    log = result.stdout + result.stderr
    problems = [line for line in log.splitlines() if line[:2] in ("E:", "F:")]
    assert result.returncode == 0 and not problems, f"dcmp2pgm failed on {pstate.name}:\n{log}"
    window, layers = parse_dump(log)
    return DcmtkRender(read_pgm(output), window, layers)


# --- the expected display, from PS3.3 ----------------------------------------------------


def expected_display(source: Dataset, gsps: Dataset) -> npt.NDArray[np.float64]:
    """The 8-bit display values PS3.3 gives: modality LUT, the GSPS's linear window, its presentation LUT."""
    stored = source.pixel_array.astype(np.float64)
    values = stored * float(source.get("RescaleSlope", 1)) + float(source.get("RescaleIntercept", 0))
    (voi,) = gsps.SoftcopyVOILUTSequence
    center, width = float(voi.WindowCenter), float(voi.WindowWidth)
    windowed = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)  # C.11.2.1.2.1
    if gsps.PresentationLUTShape == "INVERSE":
        windowed = 1.0 - windowed
    return 255.0 * windowed


def mean_in(bitmap: npt.NDArray[np.uint8], region: tuple[float, float, float, float]) -> float:
    rows, columns = bitmap.shape
    x0, y0, x1, y1 = region
    return float(bitmap[int(y0 * rows) : int(y1 * rows), int(x0 * columns) : int(x1 * columns)].mean())


# --- the SR, read with pydicom -----------------------------------------------------------


@dataclass
class SRRegion:
    tracking_id: str
    graphic_type: str
    points: Points


def sr_regions(sr: Dataset) -> dict[str, SRRegion]:
    """Each measurement group's image region (SCOORD), by its Tracking Unique Identifier."""
    regions: dict[str, SRRegion] = {}
    for item in content_items(sr):
        if item.ValueType != "CONTAINER" or concept_meaning(item) != "Measurement Group":
            continue
        uid = identifier = None
        scoords = []
        for child in item.ContentSequence:
            meaning = concept_meaning(child)
            if child.ValueType == "UIDREF" and meaning == "Tracking Unique Identifier":
                uid = str(child.UID)
            elif child.ValueType == "TEXT" and meaning == "Tracking Identifier":
                # less the prefix that makes OHIF keep the trajectory (a viewer hint, not a name)
                identifier = str(child.TextValue).removeprefix("Cornerstone3DTools@^0.1.0:PlanarFreehandROI:")
            elif child.ValueType == "SCOORD":
                scoords.append(child)
        if uid is not None and identifier is not None and len(scoords) == 1:
            regions[uid] = SRRegion(identifier, str(scoords[0].GraphicType), polyline_points(scoords[0].GraphicData))
    return regions


def gsps_objects(gsps: Dataset, layer: str) -> tuple[list[Dataset], list[Dataset]]:
    """The graphic and text objects of one layer of the GSPS, as stored."""
    graphics: list[Dataset] = []
    texts: list[Dataset] = []
    for annotation in gsps.GraphicAnnotationSequence:
        if annotation.GraphicLayer == layer:
            graphics.extend(annotation.get("GraphicObjectSequence", []))
            texts.extend(annotation.get("TextObjectSequence", []))
    return graphics, texts


def assert_points(actual: Points, expected: Points, what: str) -> None:
    assert len(actual) == len(expected), f"{what}: {len(actual)} points, expected {len(expected)}"
    differences = [max(abs(a[0] - e[0]), abs(a[1] - e[1])) for a, e in zip(actual, expected, strict=True)]
    assert max(differences) <= PRINTED, f"{what}: {actual} is not where the SR puts it, {expected}"


# --- the picture -------------------------------------------------------------------------


def layer_colours(gsps: Dataset) -> dict[str, tuple[int, int, int]]:
    colours = {}
    for layer in gsps.GraphicLayerSequence:
        lab = layer.get("GraphicLayerRecommendedDisplayCIELabValue")
        rgb = hd.color.CIELabColor.from_dicom_value([int(v) for v in lab]).to_rgb() if lab else (255, 255, 255)
        colours[str(layer.GraphicLayer)] = (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    return colours


def draw_render(render: DcmtkRender, colours: dict[str, tuple[int, int, int]], path: Path, width: int = 900) -> None:
    """dcmtk's bitmap, scaled to ``width``, with the graphics dcmtk read from the GSPS drawn on it."""
    rows, columns = render.bitmap.shape
    scale = width / columns
    picture = Image.fromarray(render.bitmap, mode="L")
    picture = picture.resize((width, round(rows * scale)), Image.Resampling.LANCZOS).convert("RGB")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(13, width // 50))

    def at(point: tuple[float, float], units: str | None) -> tuple[float, float]:
        if units == "display":  # fractions of the displayed area (here: the whole image)
            return point[0] * picture.width, point[1] * picture.height
        return point[0] * scale, point[1] * scale

    for name, layer in render.layers.items():
        colour = colours.get(name, (255, 255, 255))
        for graphic in layer.graphics:
            points = [at(p, graphic.units) for p in graphic.points]
            if graphic.kind == "polyline":
                draw.line(points, fill=colour, width=2, joint="curve")
            elif graphic.kind == "circle":
                (cx, cy), (ex, ey) = points
                radius = max(2.0, float(np.hypot(ex - cx, ey - cy)))
                draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=colour, width=2)
            else:
                raise AssertionError(f"the picture cannot draw a {graphic.kind} yet")
        for text in layer.texts:
            if text.anchor is not None:
                x, y = at(text.anchor, text.anchor_units)
                draw.text(
                    (x + 2, y - 3),
                    text.value,
                    fill=colour,
                    font=font,
                    anchor="lb",
                    stroke_width=2,
                    stroke_fill=(0, 0, 0),
                )
            elif text.box is not None:
                x0, y0 = at(text.box[:2], text.box_units)
                draw.text(
                    (x0, y0), text.value, fill=colour, font=font, anchor="lt", stroke_width=2, stroke_fill=(0, 0, 0)
                )
    picture.save(path, optimize=True)


# --- fixtures ----------------------------------------------------------------------------


@dataclass
class Rendered:
    source: Dataset
    analysis: ImageAnalysis
    sr: Dataset
    gsps: Dataset
    source_path: Path
    gsps_path: Path
    render: DcmtkRender


def render_case(
    source: Dataset, analysis: ImageAnalysis | None, directory: Path, tool: Path, name: str = "gsps"
) -> Rendered:
    study = study_analysis(source, analysis)
    sr, gsps = encode(study, [source], ("sr", "gsps"), analysis_id="render-1", content_datetime=WHEN)
    source_path = write(source, directory, "source")
    write(sr, directory, "sr")
    gsps_path = write(gsps, directory, name)
    render = dcmp2pgm(tool, source_path, gsps_path, directory / f"{name}.pgm")
    return Rendered(source, study.images[0], sr, gsps, source_path, gsps_path, render)


@pytest.fixture(params=["cr", "dx"])
def source(request: pytest.FixtureRequest, chest_cr: Dataset) -> Dataset:
    return chest_cr if request.param == "cr" else derived_dx(chest_cr)


@pytest.fixture(params=["fake-engine", "hedged"])
def analysis(request: pytest.FixtureRequest, source: Dataset) -> ImageAnalysis | None:
    return None if request.param == "fake-engine" else hedged_analysis(source)


@pytest.fixture
def rendered(source: Dataset, analysis: ImageAnalysis | None, tmp_path: Path, dicom_tool: ToolFinder) -> Rendered:
    """The source with each analysis, for the geometry checks."""
    return render_case(source, analysis, tmp_path, dicom_tool("dcmp2pgm"))


@pytest.fixture
def displayed(source: Dataset, tmp_path: Path, dicom_tool: ToolFinder) -> Rendered:
    """The source with the FakeEngine's analysis, for the grey-scale checks (the analysis does not change them)."""
    return render_case(source, None, tmp_path, dicom_tool("dcmp2pgm"))


def modified_gsps(rendered: Rendered, directory: Path, name: str, change: Callable[[Dataset], None]) -> Path:
    copy = pydicom.dcmread(rendered.gsps_path)
    change(copy)
    path = directory / f"{name}.dcm"
    copy.save_as(path, enforce_file_format=True)
    return path


# --- the grey-scale pipeline, rendered by dcmtk -------------------------------------------


def test_dcmtk_renders_the_gsps_window_and_presentation_lut(displayed: Rendered, dicom_tool: ToolFinder) -> None:
    status, report = dcmpschk_report(dicom_tool, displayed.gsps_path)
    assert status == 0 and "Error" not in report, report
    (voi,) = displayed.gsps.SoftcopyVOILUTSequence
    assert displayed.render.window == (float(voi.WindowCenter), float(voi.WindowWidth))
    bitmap = displayed.render.bitmap
    assert bitmap.shape == (int(displayed.source.Rows), int(displayed.source.Columns))
    difference = np.abs(bitmap.astype(np.float64) - expected_display(displayed.source, displayed.gsps))
    assert difference.max() <= 1.0, f"dcmtk's display differs from PS3.3's by up to {difference.max():.2f} levels"


def test_the_radiograph_displays_the_right_way_round(displayed: Rendered) -> None:
    bitmap = displayed.render.bitmap
    lungs = max(mean_in(bitmap, RIGHT_LUNG), mean_in(bitmap, LEFT_LUNG))
    mediastinum = mean_in(bitmap, MEDIASTINUM)
    assert lungs + 50 < mediastinum, f"lungs {lungs:.0f} are not darker than the mediastinum {mediastinum:.0f}"


def test_cr_and_dx_display_alike(chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder) -> None:
    tool = dicom_tool("dcmp2pgm")
    (tmp_path / "cr").mkdir()
    (tmp_path / "dx").mkdir()
    cr = render_case(chest_cr, None, tmp_path / "cr", tool)
    dx = render_case(derived_dx(chest_cr), None, tmp_path / "dx", tool)
    assert (cr.gsps.PresentationLUTShape, dx.gsps.PresentationLUTShape) == ("INVERSE", "IDENTITY")
    difference = np.abs(cr.render.bitmap.astype(np.int16) - dx.render.bitmap.astype(np.int16))
    assert difference.max() <= 1, "the MONOCHROME1 CR and its MONOCHROME2 DX twin display differently"


def test_dcmtk_takes_the_window_and_lut_from_the_gsps(
    chest_cr: Dataset, tmp_path: Path, dicom_tool: ToolFinder
) -> None:
    """Controls: dcmtk follows a changed GSPS, so the checks above test the GSPS, not the image's own settings."""
    tool = dicom_tool("dcmp2pgm")
    rendered = render_case(chest_cr, None, tmp_path, tool)

    def narrow(gsps: Dataset) -> None:
        gsps.SoftcopyVOILUTSequence[0].WindowCenter = 20000
        gsps.SoftcopyVOILUTSequence[0].WindowWidth = 8000

    narrowed_path = modified_gsps(rendered, tmp_path, "narrow", narrow)
    narrowed = dcmp2pgm(tool, rendered.source_path, narrowed_path, tmp_path / "narrow.pgm")
    expected = expected_display(chest_cr, pydicom.dcmread(narrowed_path))
    assert np.abs(narrowed.bitmap.astype(np.float64) - expected).max() <= 1.0
    assert np.abs(narrowed.bitmap.astype(np.int16) - rendered.render.bitmap).mean() > 10

    def identity(gsps: Dataset) -> None:
        gsps.PresentationLUTShape = "IDENTITY"

    flipped_path = modified_gsps(rendered, tmp_path, "identity", identity)
    flipped = dcmp2pgm(tool, rendered.source_path, flipped_path, tmp_path / "identity.pgm")
    lungs = max(mean_in(flipped.bitmap, RIGHT_LUNG), mean_in(flipped.bitmap, LEFT_LUNG))
    assert lungs > mean_in(flipped.bitmap, MEDIASTINUM) + 50, "without INVERSE the CR should display inverted"


def test_dcmtk_leaves_annotations_to_the_viewer(displayed: Rendered, tmp_path: Path, dicom_tool: ToolFinder) -> None:
    """dcmpstat renders no graphics: if this fails, dcmtk draws them now, and the geometry checks can use pixels."""

    def strip(gsps: Dataset) -> None:
        for keyword in ("GraphicAnnotationSequence", "GraphicLayerSequence", "GraphicGroupSequence"):
            if keyword in gsps:
                delattr(gsps, keyword)

    bare_path = modified_gsps(displayed, tmp_path, "bare", strip)
    bare = dcmp2pgm(dicom_tool("dcmp2pgm"), displayed.source_path, bare_path, tmp_path / "bare.pgm")
    assert not bare.layers and displayed.render.layers
    assert np.array_equal(bare.bitmap, displayed.render.bitmap)


# --- the annotations, as dcmtk reads them for this image, against the SR -----------------


def test_boxes_and_labels_land_where_the_sr_puts_them(rendered: Rendered, tmp_path: Path) -> None:
    layers = rendered.render.layers
    assert {"AI FINDINGS", "AI TRAJECTORY"} <= set(layers)
    rows, columns = int(rendered.source.Rows), int(rendered.source.Columns)
    regions = sr_regions(rendered.sr)
    groups = {g.GraphicGroupID: g for g in rendered.gsps.GraphicGroupSequence}
    for name, layer in layers.items():
        stored_graphics, stored_texts = gsps_objects(rendered.gsps, name)
        assert len(layer.graphics) == len(stored_graphics) and len(layer.texts) == len(stored_texts)
        for graphic, stored in zip(layer.graphics, stored_graphics, strict=True):
            if "TrackingUID" not in stored:
                continue
            region = regions[str(stored.TrackingUID)]  # the SR's measurement group for this graphic
            what = f"{name}: {region.tracking_id!r}"
            assert (graphic.kind, graphic.units, region.graphic_type) == ("polyline", "pixel", "POLYLINE"), what
            assert_points(graphic.points, region.points, what)
            assert groups[stored.GraphicGroupID].GraphicGroupLabel == region.tracking_id
            if name == "AI TRAJECTORY":
                continue
            assert graphic.points[0] == graphic.points[-1] and not graphic.filled, f"{what} is not an outline"
            labels = [
                text
                for text, stored_text in zip(layer.texts, stored_texts, strict=True)
                if stored_text.get("GraphicGroupID") == stored.GraphicGroupID
            ]
            assert len(labels) == 1, f"{what} has {len(labels)} labels"
            top_left = (min(x for x, _ in region.points), min(y for _, y in region.points))
            assert labels[0].value.strip() and labels[0].anchor is not None and labels[0].anchor_units == "pixel"
            assert_points([labels[0].anchor], [top_left], f"the label of {what}")
        for text in layer.texts:
            if text.anchor is not None:
                assert 0 <= text.anchor[0] <= columns and 0 <= text.anchor[1] <= rows, (
                    f"{text.value!r} is off the image"
                )
            else:
                assert text.box is not None and text.box_units == "display"
                assert all(0.0 <= v <= 1.0 for v in text.box), f"{text.value!r} is off the display"

    # every present finding's box is drawn, where the analysis put it
    boxes = [f.observation.box for f in rendered.analysis.findings if f.present and f.observation is not None]
    assert boxes, "the analysis has no present finding with a box"
    drawn = [g.points for g in layers["AI FINDINGS"].graphics]
    assert len(drawn) == len(boxes)
    for points, box in zip(drawn, boxes, strict=True):
        corners = [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1), (box.x0, box.y0)]
        assert_points(points, corners, f"the box of {box}")
    assert any(text.box is not None for text in layers["AI FINDINGS"].texts), "no disclaimer on the display"

    picture = tmp_path / "gsps-rendered.png"
    draw_render(rendered.render, layer_colours(rendered.gsps), picture)
    with Image.open(picture) as image:
        assert image.size[0] == 900 and image.mode == "RGB"


def test_trajectory_lands_where_the_sr_puts_it(rendered: Rendered) -> None:
    trajectory = rendered.render.layers["AI TRAJECTORY"]
    stored_graphics, _ = gsps_objects(rendered.gsps, "AI TRAJECTORY")
    fixations = rendered.analysis.trajectory
    assert len(fixations) >= 2
    polylines = [(g, s) for g, s in zip(trajectory.graphics, stored_graphics, strict=True) if g.kind == "polyline"]
    assert len(polylines) == 1, "the trajectory should be one polyline"
    path, stored = polylines[0]
    region = sr_regions(rendered.sr)[str(stored.TrackingUID)]
    assert (path.units, region.graphic_type) == ("pixel", "POLYLINE")
    assert_points(path.points, region.points, "the trajectory")
    in_order = [(f.point.x, f.point.y) for f in sorted(fixations, key=lambda f: f.index)]
    assert_points(region.points, in_order, "the SR's trajectory (fixation order)")

    circles = [g for g in trajectory.graphics if g.kind == "circle"]
    assert_points([c.points[0] for c in circles], region.points, "the fixation circles")
    rows, columns = int(rendered.source.Rows), int(rendered.source.Columns)
    for circle in circles:
        (cx, cy), (ex, ey) = circle.points
        assert circle.units == "pixel" and 0 < np.hypot(ex - cx, ey - cy) < 0.02 * max(rows, columns)
        assert 0 <= ex <= columns and 0 <= ey <= rows
    numbered = [t for t in trajectory.texts if t.anchor is not None]
    assert [t.value for t in numbered] == [str(f.index) for f in sorted(fixations, key=lambda f: f.index)]
    assert_points([t.anchor for t in numbered if t.anchor is not None], region.points, "the fixation numbers")


def main(argv: list[str]) -> int:
    """Write the picture in docs/outputs.md: the chest CR with the FakeEngine's analysis, rendered by dcmtk."""
    import shutil
    import tempfile

    from pydicom.data import get_testdata_file

    if len(argv) != 1:
        print("usage: python -m tests.integration.test_gsps_render OUTPUT.png", file=sys.stderr)
        return 2
    tool = shutil.which("dcmp2pgm")
    if tool is None:
        print("dcmp2pgm is not installed; install it with: apt-get install -y dcmtk", file=sys.stderr)
        return 1
    found = get_testdata_file("RG1_UNCR.dcm")
    if not isinstance(found, str):
        print("the NEMA chest CR is not available; install it with: pip install pydicom-data", file=sys.stderr)
        return 1
    source = pydicom.dcmread(found)
    with tempfile.TemporaryDirectory() as directory:
        case = render_case(source, None, Path(directory), Path(tool))
        draw_render(case.render, layer_colours(case.gsps), Path(argv[0]), width=640)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
