"""GazeX's two-stage reading of one image.

1. **examine**: the examine prompt gives the report; it is split into sentences in reading
   order (an unfinished last sentence, cut by the token budget, is dropped and noted);
2. **attention**: one attention-extraction prompt per sentence, generated as one batch about
   the one image; each answer is parsed into visual clues and an observation, mapped to source
   pixels and clipped to the image (what does not parse or falls outside is dropped, counted
   and logged without patient data);
3. each sentence is labelled with the finding vocabulary (present, absent or uncertain);
4. the trajectory is the clue centroids, sentence by sentence and clue by clue, numbered from 1.

:func:`build_image_analysis` is steps 2-4 as a pure function of the model's texts.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from inference.checkpoint import Checkpoint
from inference.engine import InputImageError
from inference.generation import GenerationBackend, GenerationRequest
from inference.geometry import ImageGeometry
from inference.labeller import label_sentence
from inference.parsing import parse_attention
from inference.pixels import display_image
from inference.prompts import PromptEncoder
from inference.results import Finding, Fixation, ImageAnalysis, Region
from inference.sentences import ends_a_sentence, split_sentences
from inference.vision_input import ModelImage, prepare_model_image

logger = logging.getLogger(__name__)

#: The note on a report with no sentence: nothing was cut, so it is not an omission.
NO_REPORT_NOTE = "the model wrote no report sentence"

#: The attention answer's markup (a coordinate pair in parentheses, or a section name opening its
#: list), which a report never holds: a report that reaches it has turned into an attention answer.
_ANSWER_MARKUP = re.compile(
    r"\(\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*\)|\b(?:visual clues|observation)\s*:\s*\[", re.IGNORECASE
)

#: A word said three or more times in a row ("vein vein vein"): greedy decoding caught in a loop,
#: which no report sentence is.
_REPEATED_WORD = re.compile(r"\b([a-z]+)(?:[\s,]+\1\b){2,}", re.IGNORECASE)


def _degenerate(sentence: str) -> str | None:
    """Why ``sentence`` is not report prose, or None when it is."""
    if _ANSWER_MARKUP.search(sentence):
        return "turned into an attention answer (coordinates)"
    if _REPEATED_WORD.search(sentence):
        return "repeats a word in a loop"
    return None


@dataclass(frozen=True, slots=True)
class ImageTimings:
    """Seconds spent on one image, by stage."""

    pixels: float
    examine: float
    attention: float
    total: float


@dataclass(frozen=True)
class ImageReport:
    """One image's analysis with what the operator may want to know about how it was made."""

    analysis: ImageAnalysis
    timings: ImageTimings
    notes: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


def build_image_analysis(
    sop_instance_uid: str,
    geometry: ImageGeometry,
    report: str,
    sentences: Sequence[str],
    answers: Sequence[str],
) -> tuple[ImageAnalysis, tuple[str, ...]]:
    """The analysis from the report's sentences and the attention answer for each.

    Returns the analysis and a reason for every region that was dropped.
    """
    if len(sentences) != len(answers):
        raise ValueError(f"{len(sentences)} sentences but {len(answers)} attention answers")
    findings: list[Finding] = []
    trajectory: list[Fixation] = []
    dropped: list[str] = []
    for number, (sentence, answer) in enumerate(zip(sentences, answers, strict=True), start=1):
        parsed = parse_attention(answer)
        dropped.extend(f"sentence {number}: {reason}" for reason in parsed.dropped)
        clues: list[Region] = []
        for index, clue in enumerate(parsed.clues, start=1):
            region = geometry.region_to_source(clue)
            if region is None:
                dropped.append(f"sentence {number}: visual clue {index}: outside the image, empty or inverted")
            else:
                clues.append(region)
        observation = None
        if parsed.observation is not None:
            observation = geometry.region_to_source(parsed.observation)
            if observation is None:
                dropped.append(f"sentence {number}: observation: outside the image, empty or inverted")
        label = label_sentence(sentence)
        findings.append(
            Finding(
                text=sentence,
                label=label.label,
                present=label.present,
                observation=observation,
                clues=tuple(clues),
                uncertain=label.uncertain,
            )
        )
        for clue_region in clues:
            trajectory.append(Fixation(index=len(trajectory) + 1, point=clue_region.centroid, region=clue_region))
    analysis = ImageAnalysis(
        sop_instance_uid=sop_instance_uid,
        rows=geometry.rows,
        columns=geometry.columns,
        report=report,
        findings=tuple(findings),
        trajectory=tuple(trajectory),
        attention=None,
    )
    return analysis, tuple(dropped)


class GazexPipeline:
    """The two stages for one checkpoint and one backend."""

    def __init__(self, checkpoint: Checkpoint, backend: GenerationBackend) -> None:
        self.checkpoint = checkpoint
        self.backend = backend
        self.prompts = PromptEncoder(
            checkpoint.tokenizer, checkpoint.gazex.prompts.examine, checkpoint.gazex.prompts.attention
        )

    def model_image(self, dataset: Dataset) -> tuple[ModelImage, tuple[str, ...]]:
        """Frame 1 of ``dataset`` as the model sees it, and notes on how it was made."""
        settings = self.checkpoint.gazex.image
        display = display_image(dataset, pixels=settings.pixels, jpeg_quality=settings.jpeg_quality)
        try:
            image = prepare_model_image(display.pixels, self.checkpoint.processing, self.checkpoint.gazex.coordinates)
        except ValueError as exc:  # the image's shape (an aspect ratio over 200): the same on every try
            uid = str(dataset.get("SOPInstanceUID", "")) or None
            raise InputImageError(
                f"SOP instance {uid or '(no SOPInstanceUID)'}: the {display.rows} x {display.columns} image cannot be "
                f"resized for the model: {exc}",
                uid,
            ) from exc
        return image, display.notes

    def examine(self, image: ModelImage) -> tuple[str, list[str], tuple[str, ...]]:
        """The report, its sentences, and notes.

        An unfinished last sentence is dropped, and the report is cut before a sentence that is not
        report prose (:func:`_degenerate`); the report text returned is then the sentences kept.
        """
        request = GenerationRequest(
            image=image.encoded,
            prompts=(self.prompts.examine(image.encoded.image_tokens),),
            max_new_tokens=self.checkpoint.gazex.generation.max_new_tokens_examine,
        )
        (generation,) = self.backend.generate([request])[0]
        report = self.prompts.decode(generation.token_ids).strip()
        sentences = split_sentences(report)
        notes: list[str] = []
        if generation.stop == "length" and sentences and not ends_a_sentence(sentences[-1]):
            sentences = sentences[:-1]
            report = " ".join(sentences)
            notes.append("the report reached the token budget; its unfinished last sentence was dropped")
        garbled = next(((i, why) for i, sentence in enumerate(sentences) if (why := _degenerate(sentence))), None)
        if garbled is not None:
            index, why = garbled
            notes.append(
                f"the report {why} in sentence {index + 1}; it was cut there ({len(sentences) - index} sentence(s) "
                "dropped)"
            )
            sentences = sentences[:index]
            report = " ".join(sentences)
        if not sentences:
            notes.append(NO_REPORT_NOTE)
        return report, sentences, tuple(notes)

    def attend(self, image: ModelImage, sentences: Sequence[str]) -> list[str]:
        """The attention-extraction answer for each sentence, generated as one batch."""
        if not sentences:
            return []
        tokens = image.encoded.image_tokens
        request = GenerationRequest(
            image=image.encoded,
            prompts=tuple(self.prompts.attention(sentence, tokens) for sentence in sentences),
            max_new_tokens=self.checkpoint.gazex.generation.max_new_tokens_attention,
        )
        (generations,) = self.backend.generate([request])
        return [self.prompts.decode(g.token_ids).strip() for g in generations]

    def analyze(self, dataset: Dataset) -> ImageReport:
        """Both stages for one image."""
        sop_instance_uid = str(dataset.get("SOPInstanceUID", ""))
        started = time.perf_counter()
        image, pixel_notes = self.model_image(dataset)
        pixels_done = time.perf_counter()
        report, sentences, examine_notes = self.examine(image)
        examine_done = time.perf_counter()
        for note in examine_notes:
            logger.warning("SOP instance %s: %s", sop_instance_uid, note)
        answers = self.attend(image, sentences)
        attention_done = time.perf_counter()
        analysis, dropped = build_image_analysis(sop_instance_uid, image.geometry, report, sentences, answers)
        if dropped:
            logger.warning(
                "SOP instance %s: dropped %d region(s) of the model's answers: %s",
                sop_instance_uid,
                len(dropped),
                "; ".join(dropped),
            )
        omissions = tuple(note for note in examine_notes if note != NO_REPORT_NOTE) + dropped
        if omissions:
            analysis = dataclasses.replace(analysis, omissions=omissions)
        finished = time.perf_counter()
        return ImageReport(
            analysis=analysis,
            timings=ImageTimings(
                pixels=pixels_done - started,
                examine=examine_done - pixels_done,
                attention=attention_done - examine_done,
                total=finished - started,
            ),
            notes=pixel_notes + examine_notes,
            dropped=dropped,
        )
