"""The synthetic scanpath follows the dictation, dwells on abnormalities and stays in the image."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from inference.demo import generate_phantoms
from inference.demo.phantoms import Phantom
from inference.demo.scanpath import tokenize


@pytest.fixture(scope="module")
def phantoms() -> list[Phantom]:
    return list(generate_phantoms(12, 40))


def test_fixations_are_chronological_and_plausible(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        fixations = phantom.reading.fixations
        assert len(fixations) >= 3 * len(phantom.sentences)
        for before, after in itertools.pairwise(fixations):
            assert before.end <= after.start  # a saccade separates fixations
        durations = np.array([f.duration for f in fixations])
        assert durations.min() >= 0.06 and durations.max() <= 1.2
        assert 0.15 < float(np.median(durations)) < 0.5
        for f in fixations:
            assert 0 <= f.x <= phantom.columns and 0 <= f.y <= phantom.rows


def test_words_are_the_report_in_order_with_timestamps(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        words = phantom.reading.words
        assert [w.text for w in words] == [t for s in phantom.sentences for t in tokenize(s.text)]
        for before, after in itertools.pairwise(words):
            assert before.start < before.end <= after.start
        for (gaze, speech, end), sentence in zip(phantom.reading.spans, phantom.sentences, strict=True):
            assert gaze < speech < end
            spoken = [w for w in words if speech <= w.start and w.end <= end]
            assert " ".join(w.text for w in spoken) == " ".join(tokenize(sentence.text))


def test_the_reader_dwells_on_abnormalities(phantoms: list[Phantom]) -> None:
    checked = 0
    for phantom in phantoms:
        for sentence, (gaze, _, end) in zip(phantom.sentences, phantom.reading.spans, strict=True):
            if not (sentence.present and sentence.region is not None):
                continue
            if sentence.label in {"endotracheal_tube", "central_venous_catheter"}:
                continue  # the reader checks the tip against the carina, outside the device's box
            region = sentence.region
            margin = 0.05 * phantom.columns
            during = [f for f in phantom.reading.fixations if gaze <= f.start and f.end <= end]
            inside = sum(
                f.duration
                for f in during
                if region.x0 - margin <= f.x <= region.x1 + margin and region.y0 - margin <= f.y <= region.y1 + margin
            )
            assert inside >= 0.6 * sum(f.duration for f in during), sentence.text
            checked += 1
    assert checked > 10


def test_abnormal_sentences_get_longer_looks_than_normal_ones(phantoms: list[Phantom]) -> None:
    abnormal: list[float] = []
    normal: list[float] = []
    for phantom in phantoms:
        for sentence, (gaze, speech, _) in zip(phantom.sentences, phantom.reading.spans, strict=True):
            (abnormal if sentence.present and sentence.region is not None else normal).append(speech - gaze)
    assert np.mean(abnormal) > np.mean(normal) + 0.5
