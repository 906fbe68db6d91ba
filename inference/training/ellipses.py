"""Which of a reading's anomaly ellipses a report sentence describes.

REFLACX does not link sentences to ellipses: radiologists drew the ellipses after dictating,
each labelled with one or more REFLACX labels and a certainty.  A sentence is linked to the
ellipses whose label it names, when it names it without negation:

1. **Labels named.** Keyword patterns per REFLACX label (:data:`LABEL_PATTERNS`, phases 1-3);
   a keyword preceded in the sentence by a negation cue (no, not, without, free of, negative
   for, resolved, clear of; "The heart is not enlarged" too) does not count.
2. **Candidates.** Ellipses carrying one of those labels with certainty at least
   ``min_certainty`` (3, "Possibly", as REFLACX's own validation scripts use).
3. **Laterality.** A sentence saying "right" or "left" (but not "bilateral"/"both") keeps
   the candidates on that side of the patient: the patient's right is the image's left,
   split at the chest box's centre (the image's centre without a chest box).
4. **Choice.** "bilateral"/"both" sentences take the union of the candidates; otherwise
   the candidate holding the most fixation time of the sentence's window (the first when tied).

The observation region is the chosen ellipse's bounding box (its extreme points), with the
box centre as centroid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from inference.reflacx.model import Ellipse, ReflacxFixation
from inference.results import Box, Region

#: Keyword patterns of each REFLACX label (phase 1 and phases 2-3 names).
LABEL_PATTERNS: dict[str, re.Pattern[str]] = {
    label: re.compile(pattern, re.IGNORECASE)
    for label, pattern in {
        "Lung nodule or mass": r"\b(nodul\w*|mass(es)?|lesions?|granulomas?)\b",
        "Nodule": r"\b(nodul\w*|granulomas?)\b",
        "Mass": r"\bmass(es)?\b",
        "Pleural abnormality": r"\b(pleural|effusions?)\b",
        "Pleural effusion": r"\beffusions?\b",
        "Pleural thickening": r"\bpleural thickening\b",
        "Enlarged cardiac silhouette": (
            r"\bcardiomegaly\b|\b(heart|cardiac)\b.*\benlarge|\benlarge\w*\b.*\b(heart|cardiac)\b"
        ),
        "Pneumothorax": r"\bpneumothora\w*\b",
        "Consolidation": r"\b(consolidat\w*|airspace (disease|opacit\w*)|pneumonia)\b",
        "Atelectasis": r"\batelecta\w*\b",
        "Pulmonary edema": r"\b(edema|oedema|vascular congestion)\b",
        "Groundglass opacity": r"\bground[- ]?glass\b",
        "Enlarged hilum": r"\bhil(um|a|ar)\b",
        "Abnormal mediastinal contour": r"\bmediastin\w*\b",
        "Wide mediastinum": r"\bmediastin\w*\b.*\bwid|\bwid\w*\b.*\bmediastin",
        "Acute fracture": r"\bfractur\w*\b",
        "Fracture": r"\bfractur\w*\b",
        "Hiatal hernia": r"\bhiat(al|us) hernia\b",
        "High lung volume / emphysema": r"\b(emphysema\w*|hyperinfla\w*|hyperexpan\w*)\b",
        "Emphysema": r"\bemphysema\w*\b",
        "Interstitial lung disease": r"\b(interstitial|fibros\w*|reticula\w*)\b",
        "Fibrosis": r"\bfibros\w*\b",
        "Airway wall thickening": r"\b(peribronchial|airway wall)\b",
    }.items()
}

NEGATION = re.compile(r"\b(no|not|without|free of|negative for|resolved|clear of)\b", re.IGNORECASE)
BILATERAL = re.compile(r"\b(bilateral\w*|both|bibasilar)\b", re.IGNORECASE)


def named_labels(sentence: str) -> set[str]:
    """The REFLACX labels a sentence names without negating them."""
    found = set()
    for label, pattern in LABEL_PATTERNS.items():
        match = pattern.search(sentence)
        if match is None:
            continue
        if NEGATION.search(sentence[: match.end()]) is None:
            found.add(label)
    return found


def _side(sentence: str) -> str | None:
    if BILATERAL.search(sentence):
        return None
    right = re.search(r"\bright\b", sentence, re.IGNORECASE) is not None
    left = re.search(r"\bleft\b", sentence, re.IGNORECASE) is not None
    if right == left:
        return None
    return "right" if right else "left"


def _dwell(ellipse: Ellipse, fixations: Sequence[ReflacxFixation]) -> float:
    cx, cy = (ellipse.xmin + ellipse.xmax) / 2.0, (ellipse.ymin + ellipse.ymax) / 2.0
    ax, ay = max(abs(ellipse.xmax - ellipse.xmin) / 2.0, 1.0), max(abs(ellipse.ymax - ellipse.ymin) / 2.0, 1.0)
    return sum(f.duration for f in fixations if ((f.x - cx) / ax) ** 2 + ((f.y - cy) / ay) ** 2 <= 1.0)


def matching_ellipses(
    sentence: str,
    ellipses: Sequence[Ellipse],
    fixations: Sequence[ReflacxFixation],
    midline: float,
    min_certainty: int = 3,
) -> list[Ellipse]:
    """The ellipses ``sentence`` describes (see the module's rules); empty when it describes none."""
    labels = named_labels(sentence)
    if not labels:
        return []
    candidates = [e for e in ellipses if e.certainty >= min_certainty and e.labels & labels]
    side = _side(sentence)
    if side is not None:
        on_side = [e for e in candidates if ((e.xmin + e.xmax) / 2.0 < midline) == (side == "right")]
        candidates = on_side or candidates
    if len(candidates) <= 1 or BILATERAL.search(sentence):
        return candidates
    best = max(candidates, key=lambda e: _dwell(e, fixations))  # max() keeps the first of equals
    return [best]


def ellipse_observation(ellipses: Sequence[Ellipse], rows: int, columns: int) -> Region | None:
    """The union of the ellipses' boxes, clipped to the image, centred; None for no ellipses."""
    if not ellipses:
        return None
    box = Box(
        min(e.box.x0 for e in ellipses),
        min(e.box.y0 for e in ellipses),
        max(e.box.x1 for e in ellipses),
        max(e.box.y1 for e in ellipses),
    ).clipped(rows, columns)
    return Region(box, box.center)
