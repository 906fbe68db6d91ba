"""Coded concepts: the finding vocabulary and every concept name our outputs use.

Each key of :data:`inference.results.FINDING_LABELS` maps to one coded concept, chosen in
this order of preference:

1. SNOMED CT, as listed in pydicom's concept dictionary (``pydicom.sr.codedict.codes``);
2. a DCM code where the standard defines one (e.g. ``112001`` "Opacity", ``112173`` "Chest tube");
3. otherwise a code of our private scheme :data:`PRIVATE_SCHEME` ("99GAZEX"), which every
   output that uses it declares in its Coding Scheme Identification Sequence.

The mapping is a pure table; :func:`finding_code` is the only way in.
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from inference.results import FINDING_LABELS, STATEMENT_LABELS

#: Designator of our private coding scheme (PS3.3 8.2: private designators begin with "99").
PRIVATE_SCHEME = "99GAZEX"
PRIVATE_SCHEME_NAME = "GazeX Gateway finding and gaze vocabulary"
PRIVATE_SCHEME_VERSION = "1"
PRIVATE_SCHEME_ORGANIZATION = "GazeX Gateway project"


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


#: Finding label -> coded concept.  Comments say where a standard code was not available.
FINDING_CODES: dict[str, Code] = {
    "no_finding": codes.SCT.Normal,  # 17621005
    # No SNOMED CT or DCM concept for "enlarged cardiomediastinum" in the dictionary.
    "enlarged_cardiomediastinum": _private("ENL_CARDIOMED", "Enlarged cardiomediastinum"),
    "cardiomegaly": codes.SCT.Cardiomegaly,  # 287272002
    "lung_opacity": codes.DCM.Opacity,  # 112001, CID 6102 thoracic radiographic findings
    "lung_lesion": codes.SCT.Lesion,  # 52988006
    "edema": codes.SCT.PulmonaryEdema,  # 19242006
    "consolidation": _private("CONSOLIDATION", "Consolidation"),
    "pneumonia": _private("PNEUMONIA", "Pneumonia"),
    "atelectasis": _private("ATELECTASIS", "Atelectasis"),
    "pneumothorax": codes.SCT.Pneumothorax,  # 36118008
    "pleural_effusion": codes.SCT.PleuralEffusion,  # 60046008
    "pleural_other": _private("PLEURAL_OTHER", "Pleural abnormality, other"),
    "fracture": _private("FRACTURE", "Fracture"),
    "support_devices": _private("SUPPORT_DEVICE", "Support device"),
    "nodule": codes.SCT.Nodule,  # 27925004
    "mass": codes.SCT.Mass,  # 4147007
    "endotracheal_tube": codes.SCT.EndotrachealTube,  # 26412008
    "central_venous_catheter": codes.SCT.CentralVenousCatheter,  # 52124006
    # SCT "Feeding tube" is narrower than an enteric tube (which includes decompression tubes).
    "enteric_tube": _private("ENTERIC_TUBE", "Enteric tube"),
    "chest_tube": codes.DCM.ChestTube,  # 112173
    # SCT "Cardiac pacemaker" is narrower than "pacemaker or defibrillator".
    "cardiac_device": _private("CARDIAC_DEVICE", "Cardiac pacemaker or defibrillator"),
    "other": _private("OTHER_STATEMENT", "Other statement"),
}

#: Labels whose segments are devices (SEG category "Physical object").
DEVICE_LABELS = frozenset(
    {"support_devices", "endotracheal_tube", "central_venous_catheter", "enteric_tube", "chest_tube", "cardiac_device"}
)
#: Labels that describe normal anatomy or a neutral statement: statements, not findings.
NEUTRAL_LABELS = STATEMENT_LABELS

# Concepts that are not findings.
FINDING: Code = codes.DCM.Finding  # 121071: CODE finding type, and TEXT for the sentence (CID 7002)
FINDINGS: Code = codes.DCM.Findings  # 121070: TEXT with the whole report
COMMENT: Code = codes.DCM.Comment  # 121106: TEXT in a measurement group; OHIF labels the group with it
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")  # TID 1500 row 12
CERTAINTY_OF_FINDING: Code = codes.DCM.CertaintyOfFinding  # 111012
SUSPECTED: Code = codes.SCT.Suspected  # 415684004: a hedged statement ("possible consolidation")
PRESENT: Code = codes.cid240.Present  # 52101004
ABSENT: Code = codes.cid240.Absent  # 272519000
VISUAL_CLUE = _private("VISUAL_CLUE", "Visual clue region")
INSPECTION_TRAJECTORY = _private("INSPECTION_PATH", "Inspection trajectory")
MODEL_ATTENTION: Code = codes.DCM.Saliency  # 130404, CID 217
ALGORITHM_FAMILY: Code = codes.DCM.ArtificialIntelligence  # 123110, CID 7162
PLAIN_RADIOGRAPHY: Code = codes.SCT.PlainRadiography  # 168537006: default "Procedure reported"

# SEG property categories (CID 7150).
CATEGORY_ABNORMAL: Code = codes.cid7150.MorphologicallyAbnormalStructure
CATEGORY_DEVICE: Code = codes.cid7150.PhysicalObject
CATEGORY_ANATOMY: Code = codes.cid7150.AnatomicalStructure
CATEGORY_SPATIAL: Code = codes.cid7150.SpatialAndRelationalConcept


def finding_code(label: str) -> Code:
    """The coded concept of a finding label; ValueError for a label outside the vocabulary."""
    try:
        return FINDING_CODES[label]
    except KeyError:
        raise ValueError(f'Argument "label" must be a key of FINDING_LABELS, got {label!r}') from None


def finding_name(label: str) -> str:
    """The human-readable name of a finding label (from FINDING_LABELS)."""
    return FINDING_LABELS[label]


def segment_category(label: str) -> Code:
    """The SEG Segmented Property Category for a finding label."""
    if label in DEVICE_LABELS:
        return CATEGORY_DEVICE
    if label in NEUTRAL_LABELS:
        return CATEGORY_ANATOMY
    return CATEGORY_ABNORMAL


def concept(code: Code) -> CodedConcept:
    """A highdicom CodedConcept for a pydicom Code."""
    return CodedConcept(code.value, code.scheme_designator, code.meaning, code.scheme_version)


def uses_private_scheme(used: list[Code]) -> bool:
    return any(c.scheme_designator == PRIVATE_SCHEME for c in used)


def coding_scheme_identification() -> list[Dataset]:
    """Items of the Coding Scheme Identification Sequence (0008,0110) for our private scheme."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeVersion = PRIVATE_SCHEME_VERSION
    item.CodingSchemeResponsibleOrganization = PRIVATE_SCHEME_ORGANIZATION
    return [item]


def terminology() -> list[tuple[str, Code]]:
    """Every concept of this table with what it codes in our outputs, for the conformance statement.

    The finding vocabulary first (one row per label of ``FINDING_LABELS``, less the statement
    labels, which are never coded: a statement carries no Finding code), then the other concepts.
    """
    rows: list[tuple[str, Code]] = [
        (f"finding `{label}` ({FINDING_LABELS[label]})", code)
        for label, code in FINDING_CODES.items()
        if label not in NEUTRAL_LABELS
    ]
    rows += [
        (f"SR: concept name of a finding's CODE (the finding) and TEXT (its sentence); {_TEXT_SR} sentences", FINDING),
        (f"SR: TEXT with the whole report (Qualitative Evaluations); {_TEXT_SR} container of the sentences", FINDINGS),
        ("SR: TEXT label of each measurement group (what a viewer shows for the box)", COMMENT),
        ("SR: the TID 1500 Qualitative Evaluations container", QUALITATIVE_EVALUATIONS),
        ("SR: concept name of the qualifier of a hedged finding", CERTAINTY_OF_FINDING),
        ('SR: value of Certainty of Finding for a hedged finding ("possible ...")', SUSPECTED),
        ('SR: value of an absent finding ("no pneumothorax")', ABSENT),
        ("SR: Finding of a visual clue's measurement group", VISUAL_CLUE),
        ("SR: Finding of the inspection trajectory's measurement group", INSPECTION_TRAJECTORY),
        ("SR: Procedure Reported when the source has no Procedure Code Sequence", PLAIN_RADIOGRAPHY),
        ("SR and SEG: Algorithm Family (TID 4019, Segmentation Algorithm Identification)", ALGORITHM_FAMILY),
        ("SEG: Segmented Property Type of the model attention segment", MODEL_ATTENTION),
        ("SEG: Segmented Property Category of the model attention segment", CATEGORY_SPATIAL),
        ("SEG: Segmented Property Category of an abnormal finding's segment", CATEGORY_ABNORMAL),
        ("SEG: Segmented Property Category of a device's segment", CATEGORY_DEVICE),
    ]
    return rows


_TEXT_SR = "Basic Text SR:"


def private_codes() -> list[Code]:
    """Every code of the private scheme, for documentation and tests."""
    found = [c for c in FINDING_CODES.values() if c.scheme_designator == PRIVATE_SCHEME]
    found += [VISUAL_CLUE, INSPECTION_TRAJECTORY]
    return found
