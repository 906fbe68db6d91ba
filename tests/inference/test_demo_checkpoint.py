"""The bundled demo checkpoint (builtin:gazex-demo): honest labelling, size, packaging, and what it can do.

The CI set is small and fixed (seed 1, phantoms 200-211, which the model card's 200-phantom
evaluation does not use), and greedy decoding is deterministic, so its figures are the same on
every run.  Two kinds of floor: those of issue 7's targets (slightly below them; these weights
reach the macro F1 one, not the IoU one, which is a strict xfail, so a checkpoint that reaches
it turns it into a failure to remove the mark), and regression floors a little below what these
weights measure, so that a change in the runtime that breaks the model is caught.
"""

from __future__ import annotations

import fnmatch
import io
import json
import tomllib
from pathlib import Path
from typing import Any

import pydicom
import pytest

from inference import CheckpointError, builtin_checkpoints, is_demo_checkpoint, load_engine
from inference.checkpoint import BUILTIN_ROOT
from inference.demo import PhantomConfig, generate_phantom
from inference.demo.dicom import phantom_dataset
from inference.training.evaluate import EvaluationSettings, evaluate_checkpoint

DEMO = BUILTIN_ROOT / "gazex-demo"
REPOSITORY = Path(__file__).resolve().parents[2]
MAX_BYTES = 25 * 1024 * 1024

CI_COUNT = 12
# floors of the targets for the fixed CI set (targets on 200 phantoms: macro F1 0.8, observation IoU 0.5)
MACRO_F1_FLOOR = 0.7
OBSERVATION_IOU_FLOOR = 0.45
# what these weights measure on the CI set, less a margin (regression floors; see MODEL_CARD.md)
PIPELINE_MACRO_F1_FLOOR = 0.8  # measured 0.871 (nodule F1 0.40, consolidation 0.8; the rest 0.86-1.0)
PIPELINE_OBSERVATION_IOU_FLOOR = 0.3  # measured 0.354 (heart 0.73, effusion 0.49, pneumothorax 0.40)
PIPELINE_TRAJECTORY_COSINE_FLOOR = 0.93  # measured 0.965
LOCATED_IOU_FLOOR = 0.29  # measured 0.332 (0.7.0: 0.407; 0.8.0 boxes a little worse what it is told)
LOCATED_CENTRED_COSINE_FLOOR = 0.6  # measured 0.658 (0.7.0: 0.725)


def test_the_demo_checkpoint_is_bundled_small_and_labelled_as_demo_weights() -> None:
    assert "gazex-demo" in builtin_checkpoints()
    size = sum(p.stat().st_size for p in DEMO.iterdir() if p.is_file())
    assert size <= MAX_BYTES, f"{size} bytes"
    document = json.loads((DEMO / "gazex.json").read_text())
    assert "not for clinical use" in document["description"].lower()
    assert "demo" in document["description"].lower()
    metadata = document["metadata"]
    assert metadata["command"][:3] == ["gazex", "model", "train"]
    assert metadata["seed"] == 0 and metadata["data"]["phantoms"]["seed"] == 0
    assert metadata["metrics"]["wall_seconds"] > 0
    card = (DEMO / "MODEL_CARD.md").read_text()
    assert "not for clinical use" in card.lower() and "gazex model eval" in card
    assert not [p.name for p in DEMO.iterdir() if p.name.startswith("state") or p.suffix in {".pt", ".bin"}]


def test_the_demo_checkpoint_says_it_is_a_demo_and_a_real_one_does_not(tmp_path: Path) -> None:
    assert json.loads((DEMO / "gazex.json").read_text())["demo"] is True
    assert is_demo_checkpoint("builtin:gazex-demo") and is_demo_checkpoint(DEMO)
    document = json.loads((DEMO / "gazex.json").read_text())
    document.update(name="gazex", demo=False)
    (tmp_path / "gazex.json").write_text(json.dumps(document))
    assert not is_demo_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"gazex\.json is missing"):
        is_demo_checkpoint(tmp_path / "nowhere")


def test_every_file_of_the_demo_checkpoint_is_package_data() -> None:
    """The wheel takes inference/checkpoints/*/ files by the globs in pyproject.toml; none may be left out."""
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    globs = project["tool"]["setuptools"]["package-data"]["inference.checkpoints"]
    for path in DEMO.iterdir():
        relative = f"{path.parent.name}/{path.name}"
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in globs), relative


def _dicom(phantom: Any) -> pydicom.Dataset:
    buffer = io.BytesIO()
    phantom_dataset(phantom).save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


@pytest.fixture(scope="module")
def demo_engine() -> Any:
    import torch

    torch.set_num_threads(1)
    return load_engine("builtin:gazex-demo", device="cpu")


def test_the_demo_engine_tells_its_callers_it_is_a_demo(demo_engine: Any) -> None:
    identity = demo_engine.identity
    assert identity.demo is True and identity.name == "gazex-demo"


def _obvious(kind: str, seed: int) -> Any:
    """The first phantom of ``seed`` with exactly ``kind``, large (cardiomegaly always is; an effusion must be),
    its report worded as the demo model's training reports were."""
    config = PhantomConfig.only(kind, report_style="structured")
    return next(
        p
        for p in (generate_phantom(seed, i, config) for i in range(40))
        if kind == "cardiomegaly" or all(getattr(f, "size", "large") == "large" for f in p.findings)
    )


def _lands_on(box: Any, truth: Any) -> None:
    assert box.iou(truth) >= 0.3, (box, truth)
    centre = box.center
    assert truth.x0 <= centre.x <= truth.x1 and truth.y0 <= centre.y <= truth.y1, (box, truth)


# a large cardiomegaly (seed 11) and a large effusion (seed 12)
OBVIOUS_CASES = [("cardiomegaly", 11), ("pleural_effusion", 12)]


@pytest.mark.parametrize(("kind", "seed"), OBVIOUS_CASES)
def test_the_observation_box_of_a_stated_obvious_finding_lands_on_it(demo_engine: Any, kind: str, seed: int) -> None:
    """The attention stage, given the report's sentence about a large finding, boxes the finding."""
    from inference.pipeline import build_image_analysis

    phantom = _obvious(kind, seed)
    truth = next(s for s in phantom.sentences if s.label == kind and s.present)
    assert truth.region is not None
    pipeline = demo_engine.pipeline
    image, _ = pipeline.model_image(_dicom(phantom))
    answers = pipeline.attend(image, [truth.text])
    analysis, _ = build_image_analysis("1.2.3", image.geometry, truth.text, [truth.text], answers)
    (finding,) = analysis.findings
    assert finding.label == kind and finding.present
    assert finding.observation is not None, answers
    _lands_on(finding.observation.box, truth.region)


@pytest.mark.parametrize(("kind", "seed"), OBVIOUS_CASES)
def test_the_demo_model_reports_an_obvious_finding_where_it_is(demo_engine: Any, kind: str, seed: int) -> None:
    """End to end (examine, then attention): a large finding is reported and its box lands on it.

    The large right effusion was reported as left, and boxed there, by 0.6.0 and 0.7.0 (a strict
    xfail then); 0.8.0, trained with weight on the word that names the side, reports it right."""
    phantom = _obvious(kind, seed)
    truth = next(s for s in phantom.sentences if s.label == kind and s.present)
    assert truth.region is not None
    analysis = demo_engine.analyze([_dicom(phantom)]).images[0]
    found = [f for f in analysis.findings if f.label == kind and f.present]
    assert found, f"the model did not report {kind}: {analysis.report}"
    assert found[0].observation is not None
    _lands_on(found[0].observation.box, truth.region)


@pytest.fixture(scope="module")
def ci_evaluations() -> dict[str, Any]:
    """Both evaluations of the fixed CI set: the whole pipeline, and the attention stage on the true sentences."""
    return {
        mode: evaluate_checkpoint(
            EvaluationSettings(
                model="builtin:gazex-demo", count=CI_COUNT, seed=1, start=200, threads=1, truth_sentences=truth
            )
        )
        for mode, truth in (("pipeline", False), ("truth_sentences", True))
    }


@pytest.mark.slow  # 2 x 12 phantoms rendered at native size and analysed: about a minute on two shared cores
def test_the_demo_checkpoint_stays_above_the_floor_of_the_macro_f1_target(ci_evaluations: dict[str, Any]) -> None:
    result = ci_evaluations["pipeline"]
    assert result.macro_f1 >= MACRO_F1_FLOOR, result.to_json()["labels"]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="the demo weights do not meet issue 7's observation IoU target (0.348 on 200 held-out phantoms, 0.5 "
    "wanted: boxes other than the heart's and the pneumothoraces' mostly miss, nodules are boxed lobe-sized, and "
    "the devices' training boxes are the reader's fixations, not the device; MODEL_CARD.md); a checkpoint that "
    "does makes this pass",
)
def test_the_demo_checkpoint_stays_above_the_floor_of_the_iou_target(ci_evaluations: dict[str, Any]) -> None:
    result = ci_evaluations["pipeline"]
    assert result.observation_iou >= OBSERVATION_IOU_FLOOR, result.to_json()["labels"]


@pytest.mark.slow
def test_the_demo_checkpoint_keeps_the_figures_it_has(ci_evaluations: dict[str, Any]) -> None:
    """Regression floors a little below what these weights measure on the CI set (see the module docstring)."""
    pipeline, located = ci_evaluations["pipeline"], ci_evaluations["truth_sentences"]
    assert pipeline.images == CI_COUNT and pipeline.images_without_sentences == 0
    assert pipeline.macro_f1 >= PIPELINE_MACRO_F1_FLOOR, pipeline.to_json()["labels"]
    assert pipeline.observation_iou >= PIPELINE_OBSERVATION_IOU_FLOOR, pipeline.to_json()["labels"]
    assert pipeline.trajectory["pairs"] > 0 and pipeline.trajectory["cosine"] >= PIPELINE_TRAJECTORY_COSINE_FLOOR
    assert located.images_without_sentences == 0
    assert located.observation_iou >= LOCATED_IOU_FLOOR, located.to_json()["labels"]
    assert located.trajectory["cosine_centered"] >= LOCATED_CENTRED_COSINE_FLOOR, located.trajectory


def test_the_demo_model_on_the_real_chest_cr_gives_a_report_that_says_it_was_cut(
    demo_engine: Any, chest_cr: pydicom.Dataset
) -> None:
    """Issue 26 item 6, end to end: on the NEMA chest CR the demo model loops, the runtime cuts the
    report, and the SR must say PARTIAL and what was dropped (it said COMPLETE before)."""
    from dicom_sr import encode

    analysis = demo_engine.analyze([chest_cr])
    (image,) = analysis.images
    assert any("loop" in omission or "token budget" in omission for omission in image.omissions), image.omissions
    sr = encode(analysis, [chest_cr], ("sr",), analysis_id="nema-cr")[0]
    assert sr.CompletionFlag == "PARTIAL"
    findings = [
        item.TextValue
        for container in sr.ContentSequence
        if container.get("ContentSequence")
        and container.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations"
        for item in container.ContentSequence
        if item.ValueType == "TEXT"
    ]
    (text,) = findings
    assert "[INCOMPLETE: " in text and text.startswith("DEMO MODEL - NOT FOR CLINICAL USE.")
    assert sr.SeriesDescription.startswith("DEMO MODEL - NOT FOR CLINICAL USE")
