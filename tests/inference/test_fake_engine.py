"""FakeEngine: a fixed analysis scaled to each image, and a way to simulate model errors."""

from __future__ import annotations

import pydicom
import pytest

from inference import Engine, FakeEngine, InferenceError


def test_fake_engine_analyses_the_chest_cr(chest_cr: pydicom.Dataset) -> None:
    engine = FakeEngine()
    assert isinstance(engine, Engine)
    analysis = engine.analyze([chest_cr])
    assert analysis.study_instance_uid == chest_cr.StudyInstanceUID
    (image,) = analysis.images
    assert (image.rows, image.columns) == (1955, 1841)
    assert [f.label for f in image.findings] == ["pleural_effusion", "cardiomegaly", "pneumothorax"]
    for finding in image.findings:
        assert finding.observation is not None
        box = finding.observation.box
        assert 0 <= box.x0 < box.x1 <= image.columns
        assert 0 <= box.y0 < box.y1 <= image.rows
    assert [f.index for f in image.trajectory] == list(range(1, 6))


def test_fake_engine_can_fail(chest_cr: pydicom.Dataset) -> None:
    with pytest.raises(InferenceError, match="boom"):
        FakeEngine(fail_with="boom").analyze([chest_cr])


def test_fake_engine_refuses_mixed_studies(chest_cr: pydicom.Dataset) -> None:
    other = pydicom.Dataset()
    other.update(chest_cr)
    other.StudyInstanceUID = "1.2.3.4"
    with pytest.raises(InferenceError, match="one study"):
        FakeEngine().analyze([chest_cr, other])
