"""Gaze maps per sentence, and which answer tokens they supervise (pure functions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.geometry import NormalizedFrame
from inference.training.data import TrainingRecord
from inference.training.gaze import (
    OBSERVATION_WEIGHT,
    answer_gaze_targets,
    sentence_gaze_maps,
    sentence_key,
    sentence_spans,
)

FRAME = NormalizedFrame(100)
IMAGE = Path("image.jpg")


def _attention(index: int, sentence: str, answer: str) -> TrainingRecord:
    return TrainingRecord(index, IMAGE, "attention", f"Locate '{sentence}'", answer, sentence)


def test_a_sentences_map_is_where_its_clues_and_observation_lie() -> None:
    # a 4 x 4 token grid over a 400 x 400 image: one cell is 25 model units
    records = [
        TrainingRecord(0, IMAGE, "examine", "Describe this chest X-ray.", "There is a nodule. No effusion."),
        _attention(
            1,
            "There is a nodule.",
            "visual clues : [(0,0)(25,25)(12,12)] observation : [(50,50)(75,75)(62,62)]",
        ),
        _attention(2, "No effusion.", "visual clues : [(0,75)(50,100)(25,87)] observation : []"),
        _attention(3, "Nothing to see.", "visual clues : [] observation : []"),
    ]
    maps = sentence_gaze_maps(records, FRAME, 400, 400, (4, 4))
    assert set(maps) == {"there is a nodule.", "no effusion."}
    nodule = maps["there is a nodule."].reshape(4, 4)
    assert nodule.sum() == pytest.approx(1.0)
    assert nodule[0, 0] == pytest.approx(1 / (1 + OBSERVATION_WEIGHT))
    assert nodule[2, 2] == pytest.approx(OBSERVATION_WEIGHT / (1 + OBSERVATION_WEIGHT))
    effusion = maps["no effusion."].reshape(4, 4)
    np.testing.assert_allclose(effusion[3, :2], [0.5, 0.5])
    assert effusion.sum() == pytest.approx(1.0)


def test_partial_cells_count_by_area_and_a_point_marks_its_cell() -> None:
    records = [
        _attention(0, "A.", "visual clues : [(0,0)(37.5,25)(18,12)] observation : []"),
        _attention(1, "B.", "observation : [(60,60)(60,60)(60,60)]"),  # a point
    ]
    maps = sentence_gaze_maps(records, FRAME, 400, 400, (4, 4))
    np.testing.assert_allclose(maps["a."].reshape(4, 4)[0, :2], [2 / 3, 1 / 3], rtol=1e-6)
    assert maps["b."].reshape(4, 4)[2, 2] == pytest.approx(1.0)


def test_sentence_spans_survive_irregular_white_space() -> None:
    text = "No  pneumothorax.\nHeart size is   normal. "
    spans = sentence_spans(text)
    assert [text[a:b] for a, b, _ in spans] == ["No  pneumothorax.", "Heart size is   normal."]
    assert [s for _, _, s in spans] == ["No pneumothorax.", "Heart size is normal."]
    assert sentence_key("Heart  size is\nNormal.") == "heart size is normal."


def test_answer_tokens_take_their_sentences_map_white_space_goes_forward() -> None:
    answer = "No pneumothorax. Heart is big. Other."
    # tokens: "No", " pneumothorax", ".", " Heart", " is", " big", ".", " Other", ".", <|im_end|>
    starts = [0, 2, 15, 16, 22, 25, 29, 30, 36, len(answer)]
    first, second = np.full(4, 0.25, np.float32), np.array([1, 0, 0, 0], np.float32)
    maps = {"no pneumothorax.": first, "heart is big.": second}  # "Other." has no map
    indices, targets = answer_gaze_targets(answer, starts, maps)
    assert indices.tolist() == [0, 1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(targets[:3], np.stack([first] * 3))
    np.testing.assert_array_equal(targets[3:], np.stack([second] * 4))

    none, empty = answer_gaze_targets(answer, starts, {})
    assert none.shape == (0,) and empty.shape == (0, 0)
