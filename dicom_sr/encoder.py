"""``encode``: one analysis of one study -> the DICOM objects that carry it back to the archive."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence

from pydicom.dataset import Dataset

from dicom_sr.common import (
    DEFAULT_OUTPUTS,
    OUTPUT_KINDS,
    EncodeContext,
    EncodeError,
    EncodeSettings,
    Predecessor,
)
from dicom_sr.gsps import build_gsps
from dicom_sr.inputs import prepare
from dicom_sr.secondary_capture import build_secondary_captures
from dicom_sr.seg import build_segs
from dicom_sr.sr import build_sr
from dicom_sr.text_sr import build_text_sr
from inference.results import StudyAnalysis

#: Output kind -> builder; each returns its datasets in image order.
BUILDERS: dict[str, Callable[[EncodeContext], list[Dataset]]] = {
    "sr": lambda ctx: [build_sr(ctx)],
    "seg": build_segs,
    "gsps": build_gsps,
    "text_sr": lambda ctx: [build_text_sr(ctx)],
    "sc": build_secondary_captures,
}


def encode(
    analysis: StudyAnalysis,
    sources: Sequence[Dataset],
    outputs: Iterable[str] = DEFAULT_OUTPUTS,
    *,
    analysis_id: str,
    content_datetime: datetime.datetime | None = None,
    settings: EncodeSettings | None = None,
    predecessor: Predecessor | None = None,
) -> list[Dataset]:
    """Encode ``analysis`` of the images ``sources`` as new DICOM instances in their study.

    Parameters
    ----------
    analysis:
        What the model produced for the study.
    sources:
        The source image datasets (pixel data is not needed, except for ``"sc"``). Every
        analysed image must be among them; a source without an analysis makes the SR PARTIAL.
    outputs:
        Any of ``"sr"`` (TID 1500 Comprehensive 3D SR), ``"seg"`` (one SEG per image, FRACTIONAL
        with only 0 and 255 unless ``EncodeSettings.seg_exact_fractions``), ``"gsps"`` (one GSPS
        per image), ``"text_sr"`` (Basic Text SR) and ``"sc"`` (one RGB Secondary Capture per
        image, overlay burned in).  Default: SR, SEG, GSPS.
    analysis_id:
        The caller's id of this analysis (the gateway's is a hash of the study, its instances and
        the model), at most 40 characters. With the source UIDs, the model identity and the
        installation (``EncodeSettings``) it determines every UID we create, so encoding the same
        analysis again gives the same UIDs.
    content_datetime:
        Content, instance and presentation creation date/time of every output. The default
        is the current local time; pass it explicitly for a reproducible encoding.
    settings:
        Our equipment identity and series numbers (:class:`EncodeSettings`).
    predecessor:
        An earlier encoding of the study that these outputs supersede (:class:`Predecessor`).

    Returns
    -------
    The datasets, in the order SR, SEGs, GSPSs, text SR, SCs (of the kinds asked for). Each
    has its file meta information; write it with
    ``pydicom.dcmwrite(path, dataset, enforce_file_format=True)``.

    Raises
    ------
    EncodeError
        When the inputs cannot be encoded; the message says what, where, and what to do.
    """
    wanted = list(dict.fromkeys(outputs))
    unknown = [kind for kind in wanted if kind not in OUTPUT_KINDS]
    if unknown:
        raise EncodeError(f"Unknown output kind(s) {unknown}; choose from {list(OUTPUT_KINDS)}.")
    ctx = prepare(
        analysis,
        sources,
        analysis_id=analysis_id,
        content_datetime=content_datetime,
        settings=settings if settings is not None else EncodeSettings(),
        predecessor=predecessor,
    )
    results: list[Dataset] = []
    for kind in OUTPUT_KINDS:
        if kind in wanted:
            results.extend(BUILDERS[kind](ctx))
    return results
