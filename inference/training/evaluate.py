"""``gazex model eval``: measure a checkpoint on held-out phantoms, through the real runtime.

Each phantom (:func:`inference.demo.generate_phantom` with the evaluation seed, which must not
be the seed the checkpoint was trained on) is rendered at its native size and written as DICOM
(CR or DX, MONOCHROME1 or MONOCHROME2, as the phantom's acquisition says), read back with
pydicom, and analysed with ``load_engine(model).analyze`` exactly as the gateway would.  The
model's findings are compared with the phantom's ground truth (:func:`inference.demo.phantom_statements`)
by the metrics of :mod:`inference.evaluation`:

- per-label precision, recall and F1 over images, and their macro F1 over the labels the
  checkpoint was trained on (``gazex.json`` ``metadata.trained_labels``; without it, every
  label) that occur in the held-out truth;
- mean observation IoU (and per label);
- laterality: of the matched present findings whose true sentence names a side, how many the
  model reports on that side (a wrong side still pairs by label, with a box on the other side);
- trajectory alignment: cosine similarity and mean distance between the model's clue
  centroids and the ground-truth fixation-cluster centroids, per matched sentence;
- time per image: wall seconds and CPU seconds (this process) of ``analyze``, pixels included.

With ``truth_sentences`` the examine stage is skipped: the attention stage is given the
phantom's own report sentences (as GazeX's paper compares attention per radiologist sentence),
which measures localisation apart from detection.  The labels, and so the F1 figures, are then
the truth's own; the time is that of the pixels and the attention stage.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom

from inference.demo import PhantomConfig, generate_phantom, phantom_statements
from inference.demo.dicom import phantom_dataset
from inference.demo.reports import REPORT_STYLES
from inference.evaluation import (
    Statement,
    finding_scores,
    macro_f1,
    observation_iou,
    side_agreement,
    statements_from_findings,
    trajectory_alignment,
)
from inference.pipeline import build_image_analysis
from inference.results import FINDING_LABELS, ImageAnalysis
from inference.runtime import GazexEngine, load_engine


class EvaluationError(ValueError):
    """The evaluation cannot be run as asked; the message says why and what to do."""


@dataclass(frozen=True)
class EvaluationSettings:
    model: str
    count: int
    seed: int
    start: int = 0
    backend: str = "torch"
    device: str = "cpu"
    threads: int | None = None
    truth_sentences: bool = False
    #: The held-out phantoms; None: default phantoms whose reports are worded the way the
    #: checkpoint's training phantoms were (``metadata.data.phantoms.report_style``).
    phantoms: PhantomConfig | None = None

    def __post_init__(self) -> None:
        if self.count < 1 or self.start < 0:
            raise ValueError("count must be at least 1 and start at least 0")


@dataclass(frozen=True)
class LabelResult:
    label: str
    support: int  # images where the truth has it
    predicted: int  # images where the model says it
    precision: float
    recall: float
    f1: float
    iou: float  # mean observation IoU of its matched present findings (NaN: none)
    iou_pairs: int
    side_agree: int  # matched present findings reported on the side the truth names
    side_pairs: int  # matched present findings whose true sentence names a side
    trained: bool


@dataclass(frozen=True)
class EvaluationResult:
    model: dict[str, Any]
    settings: dict[str, Any]
    labels: tuple[LabelResult, ...]
    macro_f1: float
    macro_labels: tuple[str, ...]
    observation_iou: float
    observation_pairs: int
    observation_total: int
    side_agree: int
    side_pairs: int
    trajectory: dict[str, float | int]
    seconds_per_image: float
    cpu_seconds_per_image: float
    seconds_p95: float
    images: int
    dropped_regions: int
    images_without_sentences: int

    def to_json(self) -> dict[str, Any]:
        def clean(value: Any) -> Any:
            if isinstance(value, float):
                return None if math.isnan(value) else round(value, 4)
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [clean(v) for v in value]
            return value

        document: dict[str, Any] = clean(
            {
                "model": self.model,
                "settings": self.settings,
                "summary": {
                    "macro_f1": self.macro_f1,
                    "macro_labels": list(self.macro_labels),
                    "observation_iou": self.observation_iou,
                    "observation_pairs": self.observation_pairs,
                    "observation_total": self.observation_total,
                    "side_agree": self.side_agree,
                    "side_pairs": self.side_pairs,
                    "trajectory": self.trajectory,
                    "seconds_per_image": self.seconds_per_image,
                    "cpu_seconds_per_image": self.cpu_seconds_per_image,
                    "seconds_p95": self.seconds_p95,
                    "images": self.images,
                    "dropped_regions": self.dropped_regions,
                    "images_without_sentences": self.images_without_sentences,
                },
                "labels": [label.__dict__ for label in self.labels],
            }
        )
        return document


def training_seed(metadata: dict[str, Any]) -> int | None:
    """The phantom seed a checkpoint was trained on, when its metadata records one."""
    data = metadata.get("data")
    phantoms = data.get("phantoms") if isinstance(data, dict) else None
    seed = phantoms.get("seed") if isinstance(phantoms, dict) else None
    return seed if isinstance(seed, int) else None


def training_report_style(metadata: dict[str, Any]) -> str:
    """How the reports of the phantoms a checkpoint was trained on were worded (default ``varied``)."""
    data = metadata.get("data")
    phantoms = data.get("phantoms") if isinstance(data, dict) else None
    style = phantoms.get("report_style") if isinstance(phantoms, dict) else None
    return style if isinstance(style, str) and style in REPORT_STYLES else "varied"


def phantom_as_dicom(seed: int, index: int, config: PhantomConfig) -> tuple[Any, list[Statement], list[str]]:
    """Phantom ``index`` of ``seed`` written as a DICOM file and read back, its ground truth and sentences."""
    phantom = generate_phantom(seed, index, config)
    buffer = io.BytesIO()
    phantom_dataset(phantom).save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer), phantom_statements(phantom), [s.text for s in phantom.sentences]


def attend_to_sentences(engine: GazexEngine, dataset: Any, sentences: list[str]) -> tuple[ImageAnalysis, int]:
    """The attention stage alone on ``sentences`` (the examine stage skipped); the dropped-region count."""
    pipeline = engine.pipeline
    image, _ = pipeline.model_image(dataset)
    answers = pipeline.attend(image, sentences)
    uid = str(dataset.get("SOPInstanceUID", ""))
    analysis, dropped = build_image_analysis(uid, image.geometry, " ".join(sentences), sentences, answers)
    return analysis, len(dropped)


def summarise(
    truth: list[list[Statement]], predicted: list[list[Statement]], trained: list[str] | None
) -> tuple[tuple[LabelResult, ...], float, tuple[str, ...]]:
    """Per-label results and the macro F1 over the trained labels present in the truth."""
    scores = finding_scores(truth, predicted)
    chosen = sorted(
        label for label, score in scores.items() if score.support > 0 and (trained is None or label in trained)
    )
    results = []
    for label, score in scores.items():
        others = frozenset(FINDING_LABELS) - {label}
        iou = observation_iou(truth, predicted, ignore=others | {"other"})
        sides = side_agreement(truth, predicted, ignore=others | {"other"})
        results.append(
            LabelResult(
                label=label,
                support=score.support,
                predicted=score.true_positives + score.false_positives,
                precision=score.precision,
                recall=score.recall,
                f1=score.f1,
                iou=iou.mean,
                iou_pairs=iou.matched,
                side_agree=sides.agree,
                side_pairs=sides.pairs,
                trained=trained is None or label in trained,
            )
        )
    return tuple(results), macro_f1(scores, chosen), tuple(chosen)


def evaluate_checkpoint(
    settings: EvaluationSettings, progress: Callable[[int, int], None] | None = None
) -> EvaluationResult:
    """Analyse ``settings.count`` held-out phantoms with the checkpoint and score the results."""
    import torch

    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    engine = load_engine(settings.model, backend=settings.backend, device=settings.device)
    metadata = dict(engine.checkpoint.gazex.metadata)
    trained_on = training_seed(metadata)
    if trained_on is not None and trained_on == settings.seed:
        raise EvaluationError(
            f"seed {settings.seed} is the seed {settings.model} was trained on; "
            "evaluate on held-out phantoms made with another --seed"
        )
    trained_labels = metadata.get("trained_labels")
    trained = [str(label) for label in trained_labels] if isinstance(trained_labels, list) else None
    phantoms = settings.phantoms or PhantomConfig(report_style=training_report_style(metadata))

    truth: list[list[Statement]] = []
    predicted: list[list[Statement]] = []
    wall: list[float] = []
    cpu: list[float] = []
    dropped = 0
    empty = 0
    for done, index in enumerate(range(settings.start, settings.start + settings.count), start=1):
        dataset, statements, sentences = phantom_as_dicom(settings.seed, index, phantoms)
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        if settings.truth_sentences:
            analysis, dropped_here = attend_to_sentences(engine, dataset, sentences)
        else:
            report = engine.analyze_study([dataset])
            analysis, dropped_here = report.images[0].analysis, len(report.images[0].dropped)
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
        dropped += dropped_here
        empty += int(not analysis.findings)
        truth.append(statements)
        predicted.append(statements_from_findings(analysis.findings))
        if progress is not None:
            progress(done, settings.count)

    labels, macro, chosen = summarise(truth, predicted, trained)
    iou = observation_iou(truth, predicted)
    sides = side_agreement(truth, predicted)
    alignment = trajectory_alignment(truth, predicted)
    identity = engine.identity
    return EvaluationResult(
        model={
            "path": str(engine.checkpoint.path),
            "name": identity.name,
            "version": identity.version,
            "weights_sha256": identity.checkpoint_sha256,
            "backend": identity.backend,
            "trained_labels": trained,
        },
        settings={
            "count": settings.count,
            "seed": settings.seed,
            "start": settings.start,
            "device": settings.device,
            "threads": torch.get_num_threads(),
            "truth_sentences": settings.truth_sentences,
            "report_style": phantoms.report_style,
        },
        labels=labels,
        macro_f1=macro,
        macro_labels=chosen,
        observation_iou=iou.mean,
        observation_pairs=iou.matched,
        observation_total=iou.total,
        side_agree=sides.agree,
        side_pairs=sides.pairs,
        trajectory={
            "cosine": alignment.cosine,
            "cosine_x": alignment.cosine_x,
            "cosine_y": alignment.cosine_y,
            "cosine_centered": alignment.cosine_centered,
            "mean_distance_pixels": alignment.mean_distance,
            "pairs": alignment.pairs,
        },
        seconds_per_image=float(np.mean(wall)),
        cpu_seconds_per_image=float(np.mean(cpu)),
        seconds_p95=float(np.percentile(wall, 95)),
        images=len(wall),
        dropped_regions=dropped,
        images_without_sentences=empty,
    )
