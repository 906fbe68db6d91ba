"""Splitting a generated report into sentences, in reading order."""

from __future__ import annotations

import re

#: Words that end with a full stop without ending a sentence.
ABBREVIATIONS = frozenset({"e.g", "i.e", "vs", "approx", "dr", "mr", "mrs", "ms", "fig", "cf", "incl"})

_BOUNDARY = re.compile(r"[.!?]+(?=\s|$)|\n+")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` in order, stripped, each with its closing punctuation.

    A sentence ends at ``.``, ``!`` or ``?`` followed by white space or the end of the text
    (so decimals such as ``1.5 cm`` stay whole), unless the word before the full stop is an
    abbreviation ("vs.", "e.g."); a line break always ends one.  White space inside a
    sentence is collapsed.
    """
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.group().startswith("."):
            words = text[start : match.start()].split()
            if words and words[-1].lower().rstrip(".") in ABBREVIATIONS and len(words) > 1:
                continue
        piece = " ".join(text[start : match.end()].split())
        if piece.strip(".!? "):
            sentences.append(piece)
        start = match.end()
    tail = " ".join(text[start:].split())
    if tail.strip(".!? "):
        sentences.append(tail)
    return sentences


def ends_a_sentence(text: str) -> bool:
    """Whether ``text`` ends with sentence-closing punctuation (a report cut short does not)."""
    return text.rstrip().endswith((".", "!", "?"))
