"""Splitting generated reports into sentences in reading order."""

from __future__ import annotations

from inference.sentences import ends_a_sentence, split_sentences


def test_reflacx_style_report() -> None:
    report = (
        "the heart size is normal. the lungs are clear. a calcified granuloma is present in left lung apex. "
        "no pleural effusion."
    )
    assert split_sentences(report) == [
        "the heart size is normal.",
        "the lungs are clear.",
        "a calcified granuloma is present in left lung apex.",
        "no pleural effusion.",
    ]


def test_decimals_abbreviations_and_other_punctuation() -> None:
    report = "Stable 1.5 cm nodule, e.g. a granuloma. Is there a pneumothorax? No!  Effusion vs. atelectasis."
    assert split_sentences(report) == [
        "Stable 1.5 cm nodule, e.g. a granuloma.",
        "Is there a pneumothorax?",
        "No!",
        "Effusion vs. atelectasis.",
    ]


def test_line_breaks_end_sentences_and_spaces_collapse() -> None:
    assert split_sentences("Heart normal\n\nLungs   clear.\n") == ["Heart normal", "Lungs clear."]


def test_empty_and_punctuation_only() -> None:
    assert split_sentences("") == []
    assert split_sentences(" . .. ! ") == []


def test_unfinished_tail_is_kept_and_detectable() -> None:
    sentences = split_sentences("No effusion. There is a small")
    assert sentences == ["No effusion.", "There is a small"]
    assert ends_a_sentence(sentences[0]) and not ends_a_sentence(sentences[1])
