"""The dictated report of a phantom: one sentence per statement, in a systematic reading order.

The order is the ABCDE approach radiologists are taught and GazeX models: **a**irway (trachea,
endotracheal tube), **b**reathing (lungs, then pleura), **c**ardiac (heart, mediastinum),
**d**iaphragm, and **e**verything else (lines, bones), then an impression when the study is
normal.  Every abnormality gets a positive sentence; absent ones get standard negative
statements ("No pleural effusion.") with some probability, so reports vary in length.

Each sentence records what it is meant to say as a ``FINDING_LABELS`` key and ``present``,
so a labeller can be tested against it: negated statements are ``present=False``; hedged ones
("Possible right lower lobe consolidation.") are ``present=True, uncertain=True``; statements
that name nothing in the vocabulary ("The trachea is midline.") are labelled ``other``.
Sentences contain exactly one period, at the end, and no decimals, so REFLACX's tokenisation
(periods and commas as words) splits them back unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from inference.demo.anatomy import Anatomy, Side
from inference.demo.findings import (
    Cardiomegaly,
    Consolidation,
    Device,
    Effusion,
    Finding,
    Lesion,
    Pneumothorax,
)
from inference.demo.regions import union
from inference.results import FINDING_LABELS, Box

T = TypeVar("T")

#: The sections of the reading order, in order.
SECTIONS: tuple[str, ...] = ("airway", "breathing", "cardiac", "diaphragm", "everything_else")


@dataclass(frozen=True)
class ReportSentence:
    """One dictated sentence, what it means, and where the reader looks while dictating it.

    ``region`` is the ground-truth region of the finding(s) the sentence reports (the union
    for a bilateral finding), or None for a statement without one (negative, or normal).
    ``targets`` are the regions the synthetic reader fixates while checking the statement.
    ``findings`` are indices into the phantom's findings that this sentence reports.
    ``uncertain`` marks a hedged positive statement ("Possible ..."), which a labeller should
    report as present and flag, like :class:`inference.results.Finding` does.
    """

    text: str
    label: str
    present: bool
    section: str
    region: Box | None
    targets: tuple[Box, ...]
    findings: tuple[int, ...] = ()
    uncertain: bool = False

    def __post_init__(self) -> None:
        if self.label not in FINDING_LABELS:
            raise ValueError(f'Argument "label" must be a key of FINDING_LABELS, got {self.label!r}')
        if self.section not in SECTIONS:
            raise ValueError(f'Argument "section" must be one of {SECTIONS}, got {self.section!r}')
        if not self.targets:
            raise ValueError("a report sentence needs at least one gaze target")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lobe(side: Side, zone: str) -> str:
    return f"{side} {zone} lobe"


def _grow(box: Box, anatomy: Anatomy, fraction: float) -> Box:
    margin = fraction * max(anatomy.rows, anatomy.columns)
    return Box(box.x0 - margin, box.y0 - margin, box.x1 + margin, box.y1 + margin).clipped(
        anatomy.rows, anatomy.columns
    )


def _tip_box(anatomy: Anatomy, device: Device) -> Box:
    x, y = device.tip
    half = 0.035 * anatomy.columns
    return Box(x - half, y - half, x + half, y + half).clipped(anatomy.rows, anatomy.columns)


@dataclass
class _Report:
    """Accumulates one phantom's sentences; each section appends to it in reading order."""

    rng: np.random.Generator
    anatomy: Anatomy
    findings: tuple[Finding, ...]
    boxes: tuple[Box, ...]
    sentences: list[ReportSentence] = field(default_factory=list)

    def add(
        self,
        text: str,
        label: str,
        present: bool,
        section: str,
        targets: tuple[Box, ...],
        region: Box | None = None,
        findings: tuple[int, ...] = (),
        uncertain: bool = False,
    ) -> None:
        sentence = ReportSentence(_capital(text), label, present, section, region, targets, findings, uncertain)
        self.sentences.append(sentence)

    def maybe(self, probability: float) -> bool:
        return bool(self.rng.random() < probability)

    def pick(self, *options: str) -> str:
        return _pick(self.rng, options)

    def of_type(self, kind: type[T]) -> list[tuple[int, T]]:
        return [(i, f) for i, f in enumerate(self.findings) if isinstance(f, kind)]

    def devices(self, kind: str) -> list[tuple[int, Device]]:
        return [(i, d) for i, d in self.of_type(Device) if d.kind == kind]


def _airway(report: _Report) -> None:
    a = report.anatomy
    for index, tube in report.devices("endotracheal_tube"):
        tip = tube.tip_description
        text = report.pick(
            f"endotracheal tube in satisfactory position, tip {tip}.",
            f"the endotracheal tube terminates {tip}.",
            f"endotracheal tube tip is {tip}.",
        )
        targets = (_tip_box(a, tube), a.carina_box(), a.trachea_box())
        report.add(text, "endotracheal_tube", True, "airway", targets, report.boxes[index], (index,))
    if report.maybe(0.7):
        text = report.pick("the trachea is midline.", "the trachea is central.")
        report.add(text, "other", True, "airway", (a.trachea_box(),))


def _lungs(report: _Report) -> None:
    a = report.anatomy
    lesions = report.of_type(Lesion)
    for index, lesion in lesions:
        diameter_mm = lesion.diameter_mm(a)
        size = f"{round(diameter_mm)} mm" if diameter_mm < 15.0 else f"{max(1, round(diameter_mm / 10.0))} cm"
        lobe, noun = _lobe(lesion.side, lesion.zone), lesion.kind
        article = "an" if size.split(maxsplit=1)[0] in {"8", "11", "18"} or size.startswith("8") else "a"
        text = report.pick(
            f"there is {article} {size} {noun} in the {lobe}.",
            f"{article} {size} {lobe} {noun} is noted.",
            f"{lobe} {noun} measuring {size}.",
        )
        region = report.boxes[index]
        report.add(text, noun, True, "breathing", (region, _grow(region, a, 0.05), region), region, (index,))
    if not lesions and report.maybe(0.4):
        text = report.pick("no pulmonary nodules.", "no suspicious pulmonary nodule.", "no discrete pulmonary nodule.")
        targets = (
            a.zone_box("right", "upper"),
            a.zone_box("left", "upper"),
            a.zone_box("right", "lower"),
            a.zone_box("left", "lower"),
        )
        report.add(text, "nodule", False, "breathing", targets)
    consolidations = report.of_type(Consolidation)
    for index, consolidation in consolidations:
        lobe = _lobe(consolidation.side, consolidation.zone)
        hedged = report.maybe(0.15)
        if hedged:
            text = report.pick(f"possible {lobe} consolidation.", f"consolidation in the {lobe} may be present.")
        else:
            text = report.pick(
                f"there is consolidation in the {lobe}.",
                f"{lobe} consolidation.",
                f"focal consolidation in the {lobe}.",
            )
        region = report.boxes[index]
        looked_at = (region, _grow(region, a, 0.04))
        report.add(text, "consolidation", True, "breathing", looked_at, region, (index,), uncertain=hedged)
    if not consolidations and report.maybe(0.85):
        text = report.pick("no focal consolidation.", "there is no focal consolidation.", "no consolidation.")
        targets = (
            a.zone_box("right", "middle"),
            a.zone_box("left", "middle"),
            a.zone_box("right", "lower"),
            a.zone_box("left", "lower"),
        )
        report.add(text, "consolidation", False, "breathing", targets)


def _pleura(report: _Report) -> None:
    a = report.anatomy
    effusions = report.of_type(Effusion)
    if effusions:
        size = effusions[0][1].size
        indices = tuple(i for i, _ in effusions)
        if len(effusions) == 2:
            text = report.pick(f"{size} bilateral pleural effusions.", f"there are {size} bilateral pleural effusions.")
        else:
            side = effusions[0][1].side
            text = report.pick(
                f"{size} {side} pleural effusion.",
                f"there is a {size} {side} pleural effusion.",
                f"a {size} {side} pleural effusion is present.",
            )
        hedged = len(effusions) == 1 and size == "small" and report.maybe(0.25)
        if hedged:
            text = f"possible small {effusions[0][1].side} pleural effusion."
        targets = tuple(box for i, e in effusions for box in (report.boxes[i], a.costophrenic_box(e.side)))
        region = union([report.boxes[i] for i in indices])
        report.add(text, "pleural_effusion", True, "breathing", targets, region, indices, uncertain=hedged)
    elif report.maybe(0.9):
        text = report.pick("no pleural effusion.", "there is no pleural effusion.", "no pleural effusions.")
        report.add(
            text, "pleural_effusion", False, "breathing", (a.costophrenic_box("right"), a.costophrenic_box("left"))
        )
    pneumothoraces = report.of_type(Pneumothorax)
    for index, pneumothorax in pneumothoraces:
        size, side = pneumothorax.size, pneumothorax.side
        options = [f"there is a {size} {side} pneumothorax.", f"{size} {side} pneumothorax."]
        if size == "small":
            options.append(f"small {side} apical pneumothorax.")
        region = report.boxes[index]
        targets = (a.apex_box(side), region, a.lateral_box(side))
        report.add(report.pick(*options), "pneumothorax", True, "breathing", targets, region, (index,))
    if not pneumothoraces and report.maybe(0.85):
        text = report.pick("no pneumothorax.", "there is no pneumothorax.", "no evidence of pneumothorax.")
        targets = (a.apex_box("right"), a.apex_box("left"), a.lateral_box("right"), a.lateral_box("left"))
        report.add(text, "pneumothorax", False, "breathing", targets)


def _cardiac(report: _Report) -> None:
    a = report.anatomy
    heart = a.heart_box()
    enlarged = report.of_type(Cardiomegaly)
    if enlarged:
        index, cardiomegaly = enlarged[0]
        degree = {"mild": "mildly", "moderate": "moderately", "marked": "markedly"}[cardiomegaly.severity]
        text = report.pick(
            f"{cardiomegaly.severity} cardiomegaly.",
            f"the heart is {degree} enlarged.",
            "the heart is enlarged.",
            "the cardiac silhouette is enlarged.",
        )
        report.add(
            text, "cardiomegaly", True, "cardiac", (heart, a.lateral_box("left"), heart), report.boxes[index], (index,)
        )
    else:
        text = report.pick("heart size is normal.", "the cardiac silhouette is normal in size.", "normal heart size.")
        report.add(text, "cardiomegaly", False, "cardiac", (heart,))
    if report.maybe(0.6):
        text = report.pick(
            "the mediastinal contours are normal.",
            "mediastinal contours are within normal limits.",
            "the mediastinum is not widened.",
        )
        report.add(text, "enlarged_cardiomediastinum", False, "cardiac", (a.mediastinum_box(),))


def _diaphragm(report: _Report) -> None:
    a = report.anatomy
    domes = (a.hemidiaphragm_box("right"), a.hemidiaphragm_box("left"))
    obscured = [e for _, e in report.of_type(Effusion) if e.size != "small"]
    if len(obscured) == 1 and report.maybe(0.6):
        side = obscured[0].side
        report.add(f"the {side} hemidiaphragm is obscured.", "other", True, "diaphragm", (a.hemidiaphragm_box(side),))
    elif not obscured and report.maybe(0.5):
        if report.maybe(0.6):
            text = report.pick("the hemidiaphragms are well defined.", "both hemidiaphragms are sharply defined.")
            report.add(text, "other", True, "diaphragm", domes)
        else:
            report.add("no free air under the diaphragm.", "other", False, "diaphragm", domes)


def _everything_else(report: _Report) -> None:
    a = report.anatomy
    for index, line in report.devices("central_venous_catheter"):
        route, tip = line.route, line.tip_description
        text = report.pick(
            f"{route} central venous catheter with tip {tip}.",
            f"{route} central line terminates {tip}.",
            f"the {route} central venous catheter terminates {tip}.",
        )
        region = report.boxes[index]
        report.add(
            text, "central_venous_catheter", True, "everything_else", (region, _tip_box(a, line)), region, (index,)
        )
    if not report.of_type(Device) and report.maybe(0.25):
        text = report.pick("no lines or tubes.", "no support devices.")
        report.add(text, "support_devices", False, "everything_else", (a.mediastinum_box(),))
    lungs = (a.lung_box("right"), a.lung_box("left"))
    if report.maybe(0.6):
        text = report.pick("no acute fracture.", "no displaced rib fractures.")
        report.add(text, "fracture", False, "everything_else", (*lungs, a.clavicle_box()))
    abnormal = any(not isinstance(f, Device) for f in report.findings)
    if not abnormal and report.maybe(0.8):
        text = report.pick("no acute cardiopulmonary process.", "no acute cardiopulmonary abnormality.")
        report.add(text, "no_finding", True, "everything_else", (*lungs, a.heart_box()))


# The structured (template) report: every item of the checklist, always, in one wording.  Each
# item is stated whether it is present or not, and its positive and negative sentences each have
# a single opening ("Pleural effusion on the right, small." / "No pleural effusion."), so the
# words that decide *present* come at one place in the sentence and in one form.  This is how
# structured-reporting templates read; the demo model is trained on them, because with free text
# a greedy decoder's "present" is split across many first words (its MODEL_CARD.md has the figures).


def _structured_airway(report: _Report) -> None:
    a = report.anatomy
    report.add("the trachea is midline.", "other", True, "airway", (a.trachea_box(),))
    tubes = report.devices("endotracheal_tube")
    for index, tube in tubes:
        targets = (_tip_box(a, tube), a.carina_box(), a.trachea_box())
        text = f"endotracheal tube tip is {tube.tip_description}."
        report.add(text, "endotracheal_tube", True, "airway", targets, report.boxes[index], (index,))
    if not tubes:
        report.add("no endotracheal tube.", "endotracheal_tube", False, "airway", (a.trachea_box(), a.carina_box()))


def _structured_lungs(report: _Report) -> None:
    a = report.anatomy
    upper_lower = tuple(a.zone_box(side, zone) for zone in ("upper", "lower") for side in ("right", "left"))
    for kind in ("nodule", "mass"):
        lesions = [(i, lesion) for i, lesion in report.of_type(Lesion) if lesion.kind == kind]
        for index, lesion in lesions:
            diameter_mm = lesion.diameter_mm(a)
            size = f"{round(diameter_mm)} mm" if diameter_mm < 15.0 else f"{max(1, round(diameter_mm / 10.0))} cm"
            region = report.boxes[index]
            text = f"{kind} in the {_lobe(lesion.side, lesion.zone)}, measuring {size}."
            report.add(text, kind, True, "breathing", (region, _grow(region, a, 0.05), region), region, (index,))
        if not lesions:
            report.add(f"no pulmonary {kind}.", kind, False, "breathing", upper_lower)
    consolidations = report.of_type(Consolidation)
    for index, consolidation in consolidations:
        region = report.boxes[index]
        text = f"consolidation in the {_lobe(consolidation.side, consolidation.zone)}."
        report.add(text, "consolidation", True, "breathing", (region, _grow(region, a, 0.04)), region, (index,))
    if not consolidations:
        middle_lower = tuple(a.zone_box(side, zone) for zone in ("middle", "lower") for side in ("right", "left"))
        report.add("no focal consolidation.", "consolidation", False, "breathing", middle_lower)


def _structured_pleura(report: _Report) -> None:
    a = report.anatomy
    effusions = report.of_type(Effusion)
    if effusions:
        size = effusions[0][1].size
        indices = tuple(i for i, _ in effusions)
        if len(effusions) == 2:
            text = f"pleural effusions on both sides, {size}."
        else:
            text = f"pleural effusion on the {effusions[0][1].side}, {size}."
        targets = tuple(box for i, e in effusions for box in (report.boxes[i], a.costophrenic_box(e.side)))
        region = union([report.boxes[i] for i in indices])
        report.add(text, "pleural_effusion", True, "breathing", targets, region, indices)
    else:
        angles = (a.costophrenic_box("right"), a.costophrenic_box("left"))
        report.add("no pleural effusion.", "pleural_effusion", False, "breathing", angles)
    pneumothoraces = report.of_type(Pneumothorax)
    for index, pneumothorax in pneumothoraces:
        region, side = report.boxes[index], pneumothorax.side
        text = f"pneumothorax on the {side}, {pneumothorax.size}."
        targets = (a.apex_box(side), region, a.lateral_box(side))
        report.add(text, "pneumothorax", True, "breathing", targets, region, (index,))
    if not pneumothoraces:
        sides = (a.apex_box("right"), a.apex_box("left"), a.lateral_box("right"), a.lateral_box("left"))
        report.add("no pneumothorax.", "pneumothorax", False, "breathing", sides)


def _structured_cardiac(report: _Report) -> None:
    a = report.anatomy
    heart = a.heart_box()
    enlarged = report.of_type(Cardiomegaly)
    if enlarged:
        index = enlarged[0][0]
        text = "the cardiac silhouette is enlarged."
        targets = (heart, a.lateral_box("left"), heart)
        report.add(text, "cardiomegaly", True, "cardiac", targets, report.boxes[index], (index,))
    else:
        report.add("the cardiac silhouette is normal in size.", "cardiomegaly", False, "cardiac", (heart,))
    mediastinum = (a.mediastinum_box(),)
    report.add("the mediastinal contours are normal.", "enlarged_cardiomediastinum", False, "cardiac", mediastinum)


def _structured_diaphragm(report: _Report) -> None:
    a = report.anatomy
    obscured = [e.side for _, e in report.of_type(Effusion) if e.size != "small"]
    if len(obscured) == 1:
        side = obscured[0]
        report.add(f"the {side} hemidiaphragm is obscured.", "other", True, "diaphragm", (a.hemidiaphragm_box(side),))
    else:
        domes = (a.hemidiaphragm_box("right"), a.hemidiaphragm_box("left"))
        text = "both hemidiaphragms are obscured." if obscured else "the hemidiaphragms are well defined."
        report.add(text, "other", True, "diaphragm", domes)


def _structured_everything_else(report: _Report) -> None:
    a = report.anatomy
    lines = report.devices("central_venous_catheter")
    for index, line in lines:
        region = report.boxes[index]
        text = f"central venous catheter via the {line.route} vein, tip {line.tip_description}."
        targets = (region, _tip_box(a, line))
        report.add(text, "central_venous_catheter", True, "everything_else", targets, region, (index,))
    if not lines:
        mediastinum = (a.mediastinum_box(),)
        report.add("no central venous catheter.", "central_venous_catheter", False, "everything_else", mediastinum)
    lungs = (a.lung_box("right"), a.lung_box("left"))
    report.add("no acute fracture.", "fracture", False, "everything_else", (*lungs, a.clavicle_box()))
    if not any(not isinstance(f, Device) for f in report.findings):
        report.add("no acute cardiopulmonary process.", "no_finding", True, "everything_else", (*lungs, a.heart_box()))


#: How a phantom's report is worded: ``varied`` (free text, several wordings of each
#: statement, negatives stated by chance, some hedged) or ``structured`` (a template: every
#: checklist item stated, in one wording; see the ``_structured_*`` sections).
REPORT_STYLES: tuple[str, ...] = ("varied", "structured")


def write_report(
    rng: np.random.Generator,
    anatomy: Anatomy,
    findings: tuple[Finding, ...],
    boxes: tuple[Box, ...],
    style: str = "varied",
) -> tuple[ReportSentence, ...]:
    """The report sentences, in reading order, consistent with ``findings`` and their ``boxes``."""
    if style not in REPORT_STYLES:
        raise ValueError(f'Argument "style" must be one of {", ".join(REPORT_STYLES)}, got {style!r}')
    report = _Report(rng, anatomy, findings, boxes)
    sections = (
        (
            _structured_airway,
            _structured_lungs,
            _structured_pleura,
            _structured_cardiac,
            _structured_diaphragm,
            _structured_everything_else,
        )
        if style == "structured"
        else (_airway, _lungs, _pleura, _cardiac, _diaphragm, _everything_else)
    )
    for section in sections:
        section(report)
    return tuple(report.sentences)


def report_text(sentences: tuple[ReportSentence, ...]) -> str:
    """The whole report as one paragraph."""
    return " ".join(sentence.text for sentence in sentences)
