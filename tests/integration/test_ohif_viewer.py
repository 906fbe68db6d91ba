"""The real viewer: OHIF v3 opens what the gateway sent into a PACS, and shows our words.

Orthanc (the shipped configuration plus its DICOMweb plugin) routes two received chest
radiographs to ``gazex serve`` (FakeEngine): the NEMA chest CR (MONOCHROME1) and a synthetic
DX (MONOCHROME2).  The gateway's SR, SEG, GSPS and Basic Text SR go back into Orthanc.  The
pinned OHIF 3.13.2 ``dist/`` is served from one loopback origin together with Orthanc's
DICOMweb (``tests/viewer_support.py``), and Debian's chromium, driven by puppeteer-core
(``tools/viewer/ohif-check.mjs``), opens each study as a radiologist would: the SR, tracked;
the SEG; the text SR.  The assertions read OHIF's own state (its measurement and segmentation
services) and DOM, with the expected words taken from the objects themselves.  Screenshots go
to ``var/ohif-screenshots/`` (printed).  Install: ``scripts/install-system-deps.sh`` (Debian
packages) and ``scripts/install-viewer.sh`` (npm; ``make tools`` runs it).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_sr.common import SERIES_DESCRIPTIONS
from inference.demo import PhantomConfig, generate_phantom
from inference.demo.dicom import phantom_dataset
from tests.conftest import missing_prerequisite
from tests.ingest_support import start_serve, write_config
from tests.orthanc_support import (
    ADMIN_PASSWORD,
    GATEWAY_AET,
    ORTHANC_AET,
    OrthancProcess,
    config_for_test,
    gateway_beside_orthanc,
    start_orthanc,
    wait_until,
)
from tests.viewer_support import (
    OHIF_DIST,
    PUPPETEER,
    REPO_ROOT,
    VIEWER_SCRIPT,
    ViewerServer,
    dicomweb_plugin,
    orthanc_dicomweb_settings,
)

pytestmark = pytest.mark.integration

OUTPUTS = ["sr", "seg", "gsps", "text_sr"]
SCREENSHOTS = REPO_ROOT / "var" / "ohif-screenshots"
COMMENT = ("121106", "DCM")
TRAJECTORY = re.compile(r"Inspection trajectory, (\d+) fixations?$")

#: OHIF reporting that it could not read or load something: any console warning like this fails
#: the test, as does any console error, page error or failed request (see _unexplained_console).
_OURS = re.compile(
    r"Unable to generate tool state|not (yet )?supported|Fractional|Error loading|failed to load|"
    r"Cannot (read|destructure)|undefined|missing|Aborting|is not rehydratable|skipping",
    re.IGNORECASE,
)


def _prerequisites(dicom_tool: Callable[[str], Path]) -> dict[str, Path]:
    tools = {name: dicom_tool(name) for name in ("Orthanc", "storescu", "node", "chromium")}
    plugin = dicomweb_plugin()
    if plugin is None:
        missing_prerequisite(
            "Orthanc's DICOMweb plugin is not installed; install it with: apt-get install -y orthanc-dicomweb"
        )
        raise AssertionError("unreachable")  # pragma: no cover
    if not (OHIF_DIST / "index.html").is_file() or not PUPPETEER.is_file():
        missing_prerequisite(
            "OHIF 3.13.2 or puppeteer-core is not installed; run scripts/install-viewer.sh (make tools)"
        )
    return {**tools, "dicomweb": plugin}


def _cr_path(chest_cr_path: Path, directory: Path) -> Path:
    """The NEMA chest CR (MONOCHROME1) as a modality would send it, less its Pixel Spacing.

    The sample's Pixel Spacing is 0\\0, with which OHIF places nothing (a black image, every
    annotation at NaN): a fault of the sample, not of our objects, so it goes without one
    (OHIF then uses 1 mm, as for any radiograph without spacing).
    """
    dataset = pydicom.dcmread(chest_cr_path)
    assert (dataset.Modality, dataset.PhotometricInterpretation) == ("CR", "MONOCHROME1")
    if "PixelSpacing" in dataset and not all(float(v) > 0 for v in dataset.PixelSpacing):
        del dataset.PixelSpacing
    path = directory / "cr.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


def _dx_path(directory: Path) -> Path:
    """A synthetic chest DX, MONOCHROME2 (the demo's phantom generator)."""
    dataset = phantom_dataset(generate_phantom(77, 1, PhantomConfig(rows=(640, 720))))
    assert (dataset.Modality, dataset.PhotometricInterpretation) == ("DX", "MONOCHROME2")
    path = directory / "dx.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


def _results(orthanc: OrthancProcess, study_uid: str) -> dict[str, Dataset] | None:
    """The gateway's SR, text SR and SEG of a study, read from Orthanc; None until all are there."""
    study = orthanc.study_id(study_uid)
    found: dict[str, Dataset] = {}
    wanted = {description: kind for kind, description in SERIES_DESCRIPTIONS.items() if kind in OUTPUTS}
    for series in orthanc.get(f"/studies/{study}/series"):
        kind = wanted.get(series["MainDicomTags"].get("SeriesDescription", ""))
        if kind in ("sr", "seg", "text_sr") and series["Instances"]:
            data = orthanc.raw(f"/instances/{series['Instances'][0]}/file")
            found[kind] = pydicom.dcmread(io.BytesIO(data))
    return found if {"sr", "seg", "text_sr"} <= set(found) else None


def _items(dataset: Dataset) -> list[Dataset]:
    out: list[Dataset] = []
    for item in dataset.get("ContentSequence", []):
        out.append(item)
        out.extend(_items(item))
    return out


def _code(item: Dataset) -> tuple[str, str]:
    concept = item.ConceptNameCodeSequence[0]
    return str(concept.CodeValue), str(concept.CodingSchemeDesignator)


def _expected_measurements(sr: Dataset) -> list[dict[str, Any]]:
    """Per measurement group of the SR: its Comment and the number of points of its SCOORD."""
    groups = [i for i in _items(sr) if i.ValueType == "CONTAINER" and _code(i) == ("125007", "DCM")]
    expected = []
    for group in groups:
        children = list(group.ContentSequence)
        comments = [c.TextValue for c in children if c.ValueType == "TEXT" and _code(c) == COMMENT]
        scoords = [c for c in children if c.ValueType == "SCOORD"]
        expected.append(
            {
                "comment": comments[0] if comments else None,
                "points": len(scoords[0].GraphicData) // 2 if scoords else 0,
                "graphic": str(scoords[0].GraphicType) if scoords else None,
            }
        )
    return expected


def _unexplained_console(report: dict[str, Any], source_uid: str) -> list[str]:
    """Console entries that may come from our objects.

    One thing is allowed, the only noise seen in these runs: OHIF cancels its pending request
    for a frame of the source radiograph (not one of our objects) when another series is
    opened in the viewport, which chromium reports as a failed request, net::ERR_ABORTED.
    """
    bad = []
    for entry in report["console"]:
        text = entry["text"]
        if entry["type"] == "requestfailed":
            if f"/instances/{source_uid}/frames/" in text and text.endswith("net::ERR_ABORTED"):
                continue
            bad.append(f"failed request: {text[:400]}")
        elif entry["type"] in ("error", "pageerror", "assert") or _OURS.search(text):
            bad.append(f"{entry['type']}: {text[:400]}")
    return bad


def test_ohif_shows_the_gateways_results(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path], chest_cr_path: Path
) -> None:
    tools = _prerequisites(dicom_tool)
    gateway_port, orthanc_http, orthanc_dicom = free_port(), free_port(), free_port()
    rule = {
        "name": "chest-radiograph",
        "match": [{"modality": ["CR", "DX"], "body_part": ["CHEST"]}],
        "outputs": OUTPUTS,
    }
    settings = gateway_beside_orthanc(tmp_path / "gazex", gateway_port, orthanc_dicom, routing={"rules": [rule]})
    config = write_config(tmp_path / "gazex.yaml", settings)
    orthanc = start_orthanc(
        tools["Orthanc"],
        tmp_path / "orthanc",
        config_for_test(orthanc_http, orthanc_dicom, **orthanc_dicomweb_settings(tools["dicomweb"])),
        {
            "ORTHANC_AET": ORTHANC_AET,
            "GAZEX_AET": GATEWAY_AET,
            "GAZEX_HOST": "127.0.0.1",
            "GAZEX_PORT": str(gateway_port),
        },
    )
    serve = None
    studies: dict[str, tuple[Path, dict[str, Dataset]]] = {}
    try:
        serve = start_serve(config, gateway_port, tmp_path / "serve.log")
        images = {"cr": _cr_path(chest_cr_path, tmp_path), "dx": _dx_path(tmp_path)}
        subprocess.run(
            [str(tools["storescu"]), "-aet", "MODALITY", "-aec", ORTHANC_AET, "127.0.0.1", str(orthanc_dicom)]
            + [str(p) for p in images.values()],
            check=True,
            capture_output=True,
            timeout=120,
        )
        for name, path in images.items():
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
            found = wait_until(partial(_results, orthanc, uid), 180, f"the gateway's results for the {name}")
            studies[name] = (path, found)

        plan: dict[str, Any] = {
            "chromium": str(tools["chromium"]),
            "out": str(tmp_path / "screenshots"),
            "timeout_ms": 60000,
            "studies": [
                {
                    "name": name,
                    "uid": str(found["sr"].StudyInstanceUID),
                    "sr": SERIES_DESCRIPTIONS["sr"],
                    "seg": SERIES_DESCRIPTIONS["seg"],
                    "text_sr": SERIES_DESCRIPTIONS["text_sr"],
                    "measurements": len(_expected_measurements(found["sr"])),
                }
                for name, (_, found) in studies.items()
            ],
        }
        with ViewerServer(OHIF_DIST, orthanc.http_port, "admin", ADMIN_PASSWORD) as viewer:
            plan["url"] = viewer.url
            plan_path = tmp_path / "plan.json"
            plan_path.write_text(json.dumps(plan), encoding="utf-8")
            run = subprocess.run(
                [str(tools["node"]), str(VIEWER_SCRIPT), str(plan_path)],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=VIEWER_SCRIPT.parent,
                check=False,
            )
            proxy_errors = list(viewer.errors)
    finally:
        if serve is not None:
            assert serve.terminate() == 0
        orthanc.stop()

    screenshots = Path(plan["out"])
    if screenshots.is_dir():
        shutil.rmtree(SCREENSHOTS, ignore_errors=True)
        shutil.copytree(screenshots, SCREENSHOTS)
        print(f"OHIF screenshots: {SCREENSHOTS}")
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((screenshots / "result.json").read_text(encoding="utf-8"))
    assert not proxy_errors, proxy_errors

    for report in result["studies"]:
        name = report["name"]
        source, found = studies[name]
        assert report.get("failure") is None, (name, report["steps"], report.get("failure"))

        # the SR: every measurement group is one tracked measurement, labelled with its Comment
        expected = _expected_measurements(found["sr"])
        assert expected and all(group["comment"] for group in expected), expected
        shown = report["measurements"]
        assert sorted(m["label"] for m in shown) == sorted(g["comment"] for g in expected), (name, shown)
        for group in expected:
            assert group["comment"] in report["measurementPanel"], (name, group["comment"])
        # the trajectory: one measurement, its label counting the fixations of its open POLYLINE
        [trajectory] = [g for g in expected if TRAJECTORY.match(g["comment"])]
        fixations = int(TRAJECTORY.match(trajectory["comment"]).group(1))  # type: ignore[union-attr]
        assert trajectory["points"] == fixations
        [tracked] = [m for m in shown if m["label"] == trajectory["comment"]]
        if fixations >= 2:
            # an open line: OHIF keeps it as an open freehand contour (not a rectangle, not dropped)
            assert tracked["toolName"] == "PlanarFreehandROI", (name, tracked)

        # the SEG: its segments, with the SEG's own labels, in order
        labels = [str(s.SegmentLabel) for s in found["seg"].SegmentSequence]
        [segmentation] = report["segmentations"]
        assert [s["label"] for s in segmentation["segments"]] == labels, (name, segmentation)
        for label in labels:
            assert label in report["segmentationPanel"], (name, label)

        # the report text: the Basic Text SR, shown as text by OHIF's SR text viewport
        sentences = [
            i.TextValue for i in _items(found["text_sr"]) if i.ValueType == "TEXT" and _code(i) == ("121071", "DCM")
        ]
        assert sentences
        for sentence in sentences:
            assert sentence in report["textViewport"], (name, sentence)

        # nothing in the console that comes from our objects
        source_uid = str(pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID)
        problems = _unexplained_console(report, source_uid)
        assert not problems, (name, problems)
        assert len(report["screenshots"]) >= 4
