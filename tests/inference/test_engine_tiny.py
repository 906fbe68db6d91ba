"""End to end with a real (tiny, random) Qwen2-VL checkpoint through load_engine."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pydicom

from inference import Engine, load_engine, study_analysis_to_dict
from inference.sentences import split_sentences


def test_load_engine_records_the_identity(tiny_checkpoint: Path) -> None:
    engine = load_engine(str(tiny_checkpoint), device="cpu")
    assert isinstance(engine, Engine)
    identity = engine.identity
    assert (identity.name, identity.version, identity.backend) == ("gazex-tiny", "0.0.1", "torch")
    assert identity.manufacturer == "GazeX Gateway project"
    assert identity.demo is False  # random test weights are not marked as the demo model
    weights = (tiny_checkpoint / "model.safetensors").read_bytes()
    assert identity.checkpoint_sha256 == hashlib.sha256(weights).hexdigest()


def test_analyze_the_chest_cr_end_to_end(
    tiny_checkpoint: Path, chest_cr: pydicom.Dataset, chest_cr_j2k: pydicom.Dataset
) -> None:
    engine = load_engine(tiny_checkpoint, device="cpu")
    report = engine.analyze_study([chest_cr])
    analysis = report.analysis
    (image,) = analysis.images
    assert (image.rows, image.columns) == (1955, 1841)
    assert image.sop_instance_uid == chest_cr.SOPInstanceUID
    assert analysis.seconds > 0
    # every complete sentence of the generated report became a finding, in order
    sentences = split_sentences(image.report)
    texts = [f.text for f in image.findings]
    assert texts == sentences[: len(texts)]
    assert len(texts) >= len(sentences) - 1
    for finding in image.findings:
        for region in (finding.observation, *finding.clues):
            if region is not None:
                assert 0 <= region.box.x0 < region.box.x1 <= 1841 and 0 <= region.box.y0 < region.box.y1 <= 1955
    clues = [c for f in image.findings for c in f.clues]
    assert [f.index for f in image.trajectory] == list(range(1, len(clues) + 1))
    assert [f.point for f in image.trajectory] == [c.centroid for c in clues]
    json.dumps(study_analysis_to_dict(analysis))  # serialisable
    # greedy and deterministic: the JPEG 2000 copy (another instance UID) gives the very same analysis
    (j2k,) = engine.analyze([chest_cr_j2k]).images
    assert replace(j2k, sop_instance_uid=image.sop_instance_uid) == image


def test_naive_backend_gives_the_same_analysis(tiny_checkpoint: Path, chest_cr: pydicom.Dataset) -> None:
    ours = load_engine(tiny_checkpoint, device="cpu").analyze([chest_cr])
    naive = load_engine(tiny_checkpoint, backend="hf-generate", device="cpu").analyze([chest_cr])
    assert naive.model.backend == "hf-generate"
    assert naive.images == ours.images
