"""Labelling report sentences with the finding vocabulary, with negation and uncertainty.

A rule-based labeller in the spirit of the CheXpert labeller and NegEx:

1. **mentions**: phrases that name an entry of :data:`inference.results.FINDING_LABELS`, most
   specific first ("endotracheal tube" before "tube", "nodule" before "lesion"); overlapping
   matches keep the more specific one.  A few phrases carry their own polarity ("no acute
   cardiopulmonary process" is ``no_finding``, present; "the lungs are clear" is
   ``lung_opacity``, absent);
2. **clauses**: cues act within their clause only; clauses end at ``;``, ``but``, ``however``,
   ``although``, ``except``, ``there is``, ``which``, ``and the`` and similar;
3. **uncertainty** ("may", "possible", "cannot exclude", "suggestive of", ...) anywhere in the
   clause makes a mention present and uncertain;
4. **negation** before the mention ("no", "without", "free of", "negative for", "resolution
   of", "normal") or after it ("is not seen", "has resolved", "is normal", "is unremarkable",
   "intact") makes it absent; pseudo-negations ("no change", "not only") do not;
5. the sentence gets the first mention that is present, else its first mention, else
   ``other``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from inference.results import FINDING_LABELS


@dataclass(frozen=True, slots=True)
class SentenceLabel:
    label: str
    present: bool
    uncertain: bool = False


@dataclass(frozen=True, slots=True)
class _Pattern:
    label: str
    regex: re.Pattern[str]
    polarity: bool | None = None  # fixed presence, or None to decide from the cues


def _p(label: str, pattern: str, polarity: bool | None = None) -> _Pattern:
    if label not in FINDING_LABELS:
        raise ValueError(f"unknown label {label!r}")
    return _Pattern(label, re.compile(pattern), polarity)


#: Mention patterns, most specific first (earlier entries win overlaps).
MENTIONS: tuple[_Pattern, ...] = (
    # Phrases with their own polarity
    _p(
        "no_finding",
        r"\bno\s+(?:acute\s+)?(?:radiographic\s+)?(?:evidence\s+of\s+)?(?:acute\s+)?"
        r"(?:cardiopulmonary|intrathoracic|thoracic|cardiothoracic|chest)\s+"
        r"(?:process|abnormalit(?:y|ies)|disease|findings?|pathology)",
        True,
    ),
    _p(
        "no_finding",
        r"\bno\s+(?:acute\s+|active\s+)(?:process|abnormalit(?:y|ies)|disease|findings?)"
        r"|\bnormal\s+(?:chest|study|radiograph|examination|exam|chest\s+radiograph)\b"
        r"|\bunremarkable\s+(?:chest|study|radiograph|examination|exam)\b|\bno\s+finding",
        True,
    ),
    _p(
        "lung_opacity",
        r"\b(?:the\s+)?(?:lungs?|lung\s+fields?)\s+(?:(?:are|is|appear|remain|appears|remains)\s+)?"
        r"(?:well[\s-]expanded\s+and\s+)?clear\b|\bclear\s+lungs?\b",
        False,
    ),
    _p(
        "pleural_effusion",
        r"\bcostophrenic\s+(?:angles?|sulc(?:us|i))\s+(?:(?:are|is|remain)\s+)?(?:sharp|clear)\b",
        False,
    ),
    # Kinds of support device
    _p("endotracheal_tube", r"\bendotracheal\b|\bet\s*tube\b|\bett\b|\bet\b(?=\s+tip)"),
    _p(
        "central_venous_catheter",
        r"\bcentral\s+(?:venous\s+)?(?:catheter|line)s?\b|\bcvc\b|\bpicc\b|\bperipherally\s+inserted"
        r"|\b(?:internal\s+jugular|ij|subclavian)\s+(?:venous\s+)?(?:catheter|line|approach)s?\b"
        r"|\bswan[\s-]?ganz\b|\bpulmonary\s+artery\s+catheter|\bport[\s-]?a[\s-]?cath\b"
        r"|\b(?:chest|power|venous)\s+port\b|\bdialysis\s+catheter|\bvenous\s+catheter",
    ),
    _p(
        "enteric_tube",
        r"\b(?:enteric|feeding|nasogastric|orogastric|gastric|dobb?hoff|ng|og|nasoenteric)\s+tubes?\b"
        r"|\bnasogastric\b|\borogastric\b|\bng\b|\bog\b",
    ),
    _p(
        "chest_tube",
        r"\bchest\s+tubes?\b|\b(?:pleural|thoracostomy|pigtail)\s+(?:tubes?|catheters?|drains?)\b|\bthoracostomy\b",
    ),
    _p(
        "cardiac_device",
        r"\bpacemaker|\bpacer\b|\bdefibrillator|\b(?:a)?icd\b|\bpacing\s+(?:leads?|wires?)"
        r"|\bcardiac\s+(?:device|leads?)\b|\bloop\s+recorder",
    ),
    _p(
        "support_devices",
        r"\bsupport\s+devices?\b|\blines?\s+and\s+tubes?\b|\btubes?\s+and\s+lines?\b|\blines?\b|\btubes?\b"
        r"|\bcatheters?\b|\bdevices?\b|\bhardware\b|\bwires?\b|\bsternotomy\b|\bclips?\b|\bstents?\b"
        r"|\bdrains?\b|\btracheostomy\b|\bprosthe\w*",
    ),
    # Lesion kinds before the general lung lesion
    _p("nodule", r"\bnodul\w*"),
    _p("mass", r"\bmass(?:es)?\b"),
    _p(
        "lung_lesion",
        r"\blesions?\b|\bgranulom\w*|\bcavit\w*|\bcysts?\b|\bcystic\b|\bneoplas\w*|\btumou?rs?\b"
        r"|\bmalignan\w*|\bcarcinoma\w*|\bmetasta\w*",
    ),
    # The CheXpert observations
    _p("pneumothorax", r"pneumothora(?:x|ces)"),
    _p(
        "pleural_effusion",
        r"\beffusions?\b|\bpleural\s+fluid\b|\bhydrothorax\b|\bfluid\s+in\s+the\s+(?:\w+\s+)?pleural"
        r"|\bblunt\w*\s+(?:of\s+)?(?:the\s+)?(?:\w+\s+)?costophrenic|\bcostophrenic\s+(?:angles?\s+)?(?:is\s+|are\s+)?blunt\w*",
    ),
    _p(
        "pleural_other",
        r"\bpleural\s+(?:thickening|plaques?|scar\w*|calcification\w*|abnormalit\w*|disease)\b"
        r"|\bfibrothorax\b|\bapical\s+(?:pleural\s+)?(?:cap|capping|thickening)\b",
    ),
    _p(
        "edema",
        r"\b(?:o)?edema\b|\bvascular\s+(?:congestion|engorgement|redistribution|prominence)"
        r"|\bpulmonary\s+(?:venous\s+)?congestion|\bcongestive\s+heart\s+failure|\bchf\b|\bkerley"
        r"|\bfluid\s+overload|\bcephalization",
    ),
    _p("consolidation", r"\bconsolidat\w*"),
    _p("pneumonia", r"\b(?:broncho)?pneumonia\b|\bpneumonitis\b|\binfecti\w*|\baspiration\b"),
    _p("atelectasis", r"\batelecta\w*|\bcollapsed?\b|\bvolume\s+loss\b"),
    _p(
        "lung_opacity",
        r"\bopaci\w*|\bdensit(?:y|ies)\b|\binfiltrat\w*|\bhaz(?:e|y|iness)\b|\bair[\s-]?space\s+(?:disease|process)"
        r"|\bground[\s-]?glass|\breticul\w*|\binterstitial\s+(?:markings?|prominence|disease|process|opaci\w*)",
    ),
    _p(
        "fracture",
        r"\bfractur\w*|\b(?:osseous|bony|skeletal)\s+(?:structures?|abnormalit\w*|injur\w*|thorax)\b|\bbones\b",
    ),
    _p(
        "enlarged_cardiomediastinum",
        r"\bcardiomediastinal\s+(?:silhouette|contours?|shadow|width|size)\b|\bmediastin\w*|\bhil(?:ar|um|a)\b",
    ),
    _p(
        "cardiomegaly",
        r"\bcardiomegaly\b|\bcardiac\s+enlargement\b|\b(?:heart|cardiac)\s+(?:size|silhouette|shadow|contours?)\b"
        r"|\benlarged\s+heart\b|\bheart\b",
    ),
)

UNCERTAINTY_CUES = re.compile(
    r"\bmay\b|\bmight\b|\bcould\b|\bpossibl[ey]\b|\bprobabl[ey]\b|\b(?:un)?likely\b"
    r"|\bcan\s*(?:not|'t)\s+(?:be\s+)?(?:excluded?|ruled?\s+out)\b|\bnot\s+(?:be\s+)?(?:excluded|ruled\s+out)\b"
    r"|\bdifficult\s+to\s+exclude\b|\brule\s+out\b|\br/o\b|\bsuggest\w*|\bconcern\w*\s+for\b|\bsuspicious\s+for\b"
    r"|\bsuspect\w*|\bquestionabl[ey]\b|\bquestion\s+of\b|\bequivocal\b|\bindeterminate\b|\bborderline\b"
    r"|\bversus\b|\bvs\b|\bdifferential\b|\bpresum\w*|\bpotential(?:ly)?\b|\bperhaps\b|\bapparent(?:ly)?\b"
)

PSEUDO_NEGATIONS = re.compile(
    r"\bno\s+(?:(?:significant|interval|appreciable|substantial|definite)\s+)*"
    r"(?:change|increase|decrease|improvement|worsening|progression)\b"
    r"|\bnot\s+(?:only|necessarily)\b|\bwithout\s+(?:(?:significant|interval)\s+)*change\b"
)

PRE_NEGATIONS = re.compile(
    r"\bno\b|\bnot\b|\bwithout\b|\bfree\s+of\b|\bnegative\s+for\b|\babsen(?:ce|t)\b|\bresol(?:ved|ution)\b"
    r"|\bremoval\s+of\b|\bremoved\b|\bclear\s+of\b|\bnor\b|\bneither\b|\bnormal\b|\bunremarkable\b|\bdenies\b"
)

POST_NEGATIONS = re.compile(
    r"\b(?:is|are|was|were|has|have)\s+(?:not|no\s+longer)\b|\bnot\s+(?:seen|identified|present|visuali[sz]ed|evident"
    r"|demonstrated|appreciated|detected)\b|\bresolved\b|\bremoved\b|\bnormal\b|\bunremarkable\b|\bintact\b"
    r"|\bclear\b|\bsharp\b|\babsent\b|\bnegative\b|\bno\s+longer\b"
)

CLAUSE_BREAKS = re.compile(
    r"[;:]|\bbut\b|\bhowever\b|\balthough\b|\bthough\b|\bexcept\b|\baside\s+from\b|\bapart\s+from\b"
    r"|\bother\s+than\b|\bwhereas\b|\bwith\s+the\s+exception\s+of\b|\bthere\s+(?:is|are|has|have|was|were)\b"
    r"|\bwhich\b|\band\s+the\b|,\s+(?:the|a|an|there|it|this)\b"
)


@dataclass(frozen=True, slots=True)
class _Mention:
    label: str
    start: int
    end: int
    polarity: bool | None


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def _overlaps(span: tuple[int, int], others: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in others)


def find_mentions(text: str) -> list[_Mention]:
    """Non-overlapping mentions in ``text`` (lower case), in reading order."""
    taken: list[tuple[int, int]] = []
    mentions: list[_Mention] = []
    for pattern in MENTIONS:
        for match in pattern.regex.finditer(text):
            span = (match.start(), match.end())
            if span[0] == span[1] or _overlaps(span, taken):
                continue
            taken.append(span)
            mentions.append(_Mention(pattern.label, span[0], span[1], pattern.polarity))
    return sorted(mentions, key=lambda m: m.start)


def label_sentence(sentence: str) -> SentenceLabel:
    """The finding label of one report sentence, with presence and uncertainty."""
    text = " ".join(sentence.lower().split())
    mentions = find_mentions(text)
    if not mentions:
        return SentenceLabel("other", present=True)

    breaks = [0, *(m.start() for m in CLAUSE_BREAKS.finditer(text)), len(text) + 1]
    mention_spans = [(m.start, m.end) for m in mentions]
    uncertain_spans = _spans(UNCERTAINTY_CUES, text)
    blocked = uncertain_spans + _spans(PSEUDO_NEGATIONS, text) + mention_spans

    def usable(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [s for s in spans if not _overlaps(s, blocked)]

    pre = usable(_spans(PRE_NEGATIONS, text))
    post = usable(_spans(POST_NEGATIONS, text))
    uncertain_cues = [s for s in uncertain_spans if not _overlaps(s, mention_spans)]

    def clause(position: int) -> tuple[int, int]:
        start = max(b for b in breaks if b <= position)
        end = min(b for b in breaks if b > position)
        return start, end

    labels: list[SentenceLabel] = []
    for mention in mentions:
        if mention.polarity is not None:
            labels.append(SentenceLabel(mention.label, present=mention.polarity))
            continue
        low, high = clause(mention.start)
        if any(low <= s < high for s, _ in uncertain_cues):
            labels.append(SentenceLabel(mention.label, present=True, uncertain=True))
            continue
        negated = any(low <= s < mention.start for s, _ in pre) or any(mention.end <= s < high for s, _ in post)
        labels.append(SentenceLabel(mention.label, present=not negated))
    for label in labels:
        if label.present:
            return label
    return labels[0]


#: A word that names a side of the chest.
SIDE_WORDS = re.compile(r"\b(right|left|bilateral(?:ly)?|both)\b", re.IGNORECASE)


def sentence_side(sentence: str) -> str | None:
    """The side a sentence names first: ``right``, ``left`` or ``bilateral`` (also for "both"); None.

    The patient's side, as reports name it ("right pleural effusion", "left internal jugular
    catheter"); the training targets' side split and the evaluation's laterality check use it.
    """
    found = SIDE_WORDS.search(sentence)
    if found is None:
        return None
    word = found.group(1).lower()
    return word if word in ("right", "left") else "bilateral"
