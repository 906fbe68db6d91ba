"""Sentences, windows, visual clues and holistic regions from fixations, by hand."""

from __future__ import annotations

import pytest

from inference.reflacx.model import ReflacxFixation, TranscribedWord
from inference.results import Box, Point
from inference.training.attention import (
    AttentionSettings,
    DictatedSentence,
    dictated_sentences,
    join_words,
    sentence_attention,
    window_fixations,
)


def _words(*items: tuple[str, float, float]) -> list[TranscribedWord]:
    return [TranscribedWord(w, s, e) for w, s, e in items]


def test_sentences_are_split_at_dictated_periods() -> None:
    words = _words(
        ("no", 1.0, 1.2),
        ("pneumothorax", 1.3, 1.9),
        (".", 2.0, 2.3),
        ("small", 5.0, 5.3),
        ("left", 5.4, 5.6),
        ("effusion", 5.7, 6.2),
        (",", 6.3, 6.5),
        ("stable", 6.6, 7.0),
        (".", 7.1, 7.4),
        ("trailing", 9.0, 9.4),
    )
    assert dictated_sentences(words) == [
        DictatedSentence("no pneumothorax.", 1.0, 2.3),
        DictatedSentence("small left effusion, stable.", 5.0, 7.4),
        DictatedSentence("trailing", 9.0, 9.4),
    ]
    assert join_words(["a", ".", "b", ",", "c", "."]) == "a. b, c."


def test_the_window_reaches_back_by_the_lead() -> None:
    sentence = DictatedSentence("x.", 10.0, 12.0)
    fixations = [
        ReflacxFixation(6.0, 7.9, 0, 0),  # ends before the window
        ReflacxFixation(7.5, 8.1, 0, 0),  # overlaps its start
        ReflacxFixation(11.0, 11.5, 0, 0),
        ReflacxFixation(11.9, 12.4, 0, 0),  # overlaps its end
        ReflacxFixation(12.1, 12.5, 0, 0),  # after
    ]
    assert window_fixations(fixations, sentence, 2.0) == fixations[1:4]
    assert window_fixations(fixations, sentence, 0.0) == fixations[2:4]


def test_clues_are_clusters_in_time_order_with_weighted_centroids() -> None:
    ppd = 10.0  # pixels per degree: eps 2 degrees = 20 px, fovea 1 degree = 10 px

    def fix(start: float, end: float, x: float, y: float) -> ReflacxFixation:
        return ReflacxFixation(start, end, x, y, pixels_per_degree_x=ppd, pixels_per_degree_y=ppd)

    fixations = [
        fix(1.0, 1.3, 300.0, 300.0),  # second group, looked at first...
        fix(1.4, 1.5, 310.0, 300.0),
        fix(2.0, 2.2, 100.0, 100.0),  # first group
        fix(2.3, 2.9, 110.0, 100.0),
        fix(3.0, 3.1, 900.0, 50.0),  # a stray glance
        fix(3.2, 3.3, 305.0, 310.0),  # ...and again at the end
    ]
    sentence = DictatedSentence("s.", 3.0, 3.5)
    attention = sentence_attention(
        fixations, sentence, rows=1000, columns=1000, settings=AttentionSettings(lead_seconds=2.0)
    )
    assert len(attention.clues) == 2
    first, second = attention.clues
    # clues are ordered by their fixations' mean time: the 300-px group (mid-times 1.15, 1.45
    # and 3.25: mean 1.95) comes before the 100-px group (2.1 and 2.6: mean 2.35)
    assert first.box == Box(290.0, 290.0, 320.0, 320.0)
    assert second.box == Box(90.0, 90.0, 120.0, 110.0)
    # durations 0.2 and 0.6 weigh the centroid towards x = 110
    assert second.centroid.x == pytest.approx((100.0 * 0.2 + 110.0 * 0.6) / 0.8)
    assert second.centroid.y == pytest.approx(100.0)
    # the stray is in no clue and not in the holistic region
    assert attention.holistic is not None
    assert attention.holistic.box == Box(90.0, 90.0, 320.0, 320.0)


def test_no_fixations_means_no_attention_and_lone_fixations_still_give_a_region() -> None:
    sentence = DictatedSentence("s.", 3.0, 3.5)
    empty = sentence_attention([], sentence, 100, 100)
    assert empty.clues == () and empty.holistic is None
    lone = sentence_attention([ReflacxFixation(3.0, 3.2, 50.0, 40.0)], sentence, 450, 450)
    assert lone.clues == ()  # one fixation is not a cluster
    assert lone.holistic is not None and lone.holistic.centroid == Point(50.0, 40.0)
    # without recorded angular resolution: max(rows, columns) / 45 = 10 px per degree
    assert lone.holistic.box == Box(40.0, 30.0, 60.0, 50.0)
