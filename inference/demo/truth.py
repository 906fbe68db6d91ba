"""A phantom's ground truth as evaluation statements (what ``gazex model eval`` compares against)."""

from __future__ import annotations

from inference.demo.phantoms import Phantom
from inference.evaluation import Statement
from inference.labeller import sentence_side
from inference.reflacx.model import ReflacxFixation, TranscribedWord
from inference.training.attention import AttentionSettings, dictated_sentences, sentence_attention


def phantom_fixations(phantom: Phantom) -> tuple[ReflacxFixation, ...]:
    """The phantom's fixations as REFLACX records them (with the angular resolution)."""
    ppd = float(phantom.anatomy.pixels_per_degree())
    return tuple(
        ReflacxFixation(f.start, f.end, f.x, f.y, pixels_per_degree_x=ppd, pixels_per_degree_y=ppd)
        for f in phantom.reading.fixations
    )


def phantom_statements(phantom: Phantom, settings: AttentionSettings | None = None) -> list[Statement]:
    """One statement per report sentence: its intended label and presence, the ground-truth
    region (present findings only), the side it names, and the centroids of the fixation
    clusters found in its dictation window, exactly as the training-record converter finds them."""
    words = [TranscribedWord(w.text, w.start, w.end) for w in phantom.reading.words]
    dictated = dictated_sentences(words)
    if len(dictated) != len(phantom.sentences):
        raise ValueError(
            f"phantom {phantom.identifier}: {len(dictated)} dictated sentences for {len(phantom.sentences)} written"
        )
    fixations = phantom_fixations(phantom)
    statements = []
    for written, spoken in zip(phantom.sentences, dictated, strict=True):
        attention = sentence_attention(fixations, spoken, phantom.rows, phantom.columns, settings)
        region = written.region if written.present else None
        centroids = tuple(c.centroid for c in attention.clues)
        statements.append(Statement(written.label, written.present, region, centroids, sentence_side(written.text)))
    return statements
