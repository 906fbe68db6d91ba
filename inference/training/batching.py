"""From training records to token batches: what the model reads and which tokens it is scored on.

Pure functions on token ids (numpy), so they are tested without a model.

- :func:`tokenise_record`: the prompt is encoded exactly as the runtime encodes it
  (:meth:`inference.prompts.PromptEncoder.encode_chat`, i.e. :func:`inference.prompts.render_chat`
  with the image placeholder expanded), then the answer and ``<|im_end|>`` are appended.  Only
  the answer and ``<|im_end|>`` are *targets* (the loss is on the assistant tokens only); the
  runtime's generation prompt is therefore a prefix of every training sequence, token for token.
- :func:`plan_micro_batch`: all records of one image become one batch that shares the image:
  the common prefix (system turn, image, and whatever prompt text all rows share) runs once and
  its key/value cache serves every row, as :mod:`inference.generation` plans it for inference.
  Each target token is read from the suffix output of the position before it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.config import GenerationSettings
from inference.generation import IntArray, PrefixPlan, TokenSpec, plan_shared_prefix
from inference.labeller import SIDE_WORDS, label_sentence
from inference.parsing import OBSERVATION_HEADER
from inference.prompts import IM_END, PromptEncoder, render_chat
from inference.training.data import Task, TrainingRecord
from inference.training.gaze import sentence_spans

TASK_CODES: dict[Task, int] = {"examine": 0, "attention": 1}
DIGITS = frozenset("0123456789")
#: Labels of sentences that state no finding (their "present" is not a finding's).
NOT_FINDINGS = frozenset({"other", "no_finding"})


@dataclass(frozen=True)
class TokenisedRecord:
    """One record as token ids: ``ids[:prompt_length]`` is the prompt, the rest the targets."""

    ids: tuple[int, ...]
    prompt_length: int
    weights: npt.NDArray[np.float32]  # one per target token
    task: Task

    @property
    def target_count(self) -> int:
        return len(self.ids) - self.prompt_length


def digit_token_ids(tokenizer: object) -> frozenset[int]:
    """The ids of the tokens that are a single decimal digit (the coordinates' tokens)."""
    size = int(tokenizer.get_vocab_size())  # type: ignore[attr-defined]
    found = set()
    for token_id in range(size):
        token = tokenizer.id_to_token(token_id)  # type: ignore[attr-defined]
        if token is not None and len(token) == 1 and token in DIGITS:
            found.add(token_id)
    return frozenset(found)


def answer_lengths(records: Sequence[TrainingRecord], tokenizer: object) -> dict[Task, list[int]]:
    """Per task, the tokens each answer takes to generate, its ``<|im_end|>`` included."""
    lengths: dict[Task, list[int]] = {"examine": [], "attention": []}
    for task, found in lengths.items():
        answers = [record.answer + IM_END for record in records if record.task == task]
        if answers:
            encoded = tokenizer.encode_batch(answers, add_special_tokens=False)  # type: ignore[attr-defined]
            found.extend(len(item.ids) for item in encoded)
    return lengths


def generation_shortfalls(lengths: dict[Task, list[int]], generation: GenerationSettings) -> list[str]:
    """What the checkpoint's generation limits would cut off of its own training answers.

    Generation stops at ``max_new_tokens``, so an answer longer than its task's limit comes out
    truncated at run time: an attention answer loses its observation region (dropped, counted),
    an examine answer its last sentences.  Training is not affected, which is why nothing else
    notices.  One message per task whose limit is shorter than its longest answer.
    """
    limits: dict[Task, tuple[int, str]] = {
        "examine": (generation.max_new_tokens_examine, "--max-new-tokens-examine"),
        "attention": (generation.max_new_tokens_attention, "--max-new-tokens-attention"),
    }
    messages = []
    for task, found in lengths.items():
        limit, option = limits[task]
        if not found or max(found) <= limit:
            continue
        over = sum(1 for length in found if length > limit)
        messages.append(
            f"{option} {limit}: {over} of {len(found)} {task} answers ({100.0 * over / len(found):.1f} %) are "
            f"longer (up to {max(found)} tokens with <|im_end|>); the checkpoint would cut them off when it "
            f"generates; at least {max(found)} keeps them whole"
        )
    return messages


def tokenise_record(
    record: TrainingRecord,
    encoder: PromptEncoder,
    tokenizer: object,
    image_tokens: int,
    *,
    coordinate_weight: float = 1.0,
    examine_weight: float = 1.0,
    decision_weight: float = 1.0,
    positive_weight: float = 1.0,
    observation_weight: float | None = None,
    side_weight: float = 1.0,
    digit_ids: Collection[int] = frozenset(),
) -> TokenisedRecord:
    """The token ids of ``record`` and the weight of each target token.

    Examine answers' tokens weigh ``examine_weight``, and the first token of each of their
    sentences (:func:`sentence_first_tokens`) ``decision_weight`` times that, and
    ``positive_weight`` times more where the sentence states a finding as present (the rarer
    decision: weighing it up moves the greedy decision's threshold towards the prevalence of
    findings that the model reads with little certainty); the token of each word that names a
    side ("right", "left", "bilateral", "both") ``side_weight`` times more; digit tokens of
    attention answers (the coordinates) weigh ``coordinate_weight``, those of the observation
    region ``observation_weight`` (None: the same); every other target weighs 1.
    """
    rendered = render_chat(record.user, assistant_text=record.answer)
    if not rendered.startswith(render_chat(record.user)):
        raise AssertionError("render_chat must render the generation prompt as the prefix of a training example")
    prompt = encoder.encode_chat(record.user, image_tokens)
    encoded = tokenizer.encode(record.answer + IM_END, add_special_tokens=False)  # type: ignore[attr-defined]
    answer = tuple(encoded.ids)
    weights = np.full(len(answer), examine_weight if record.task == "examine" else 1.0, dtype=np.float32)
    if record.task == "examine" and (decision_weight != 1.0 or positive_weight != 1.0):
        for index, sentence in sentence_openings(record.answer, [end for _, end in encoded.offsets]):
            weights[index] *= decision_weight
            label = label_sentence(sentence)
            if label.present and label.label not in NOT_FINDINGS:
                weights[index] *= positive_weight
    if record.task == "examine" and side_weight != 1.0:
        for index in side_word_tokens(record.answer, [end for _, end in encoded.offsets]):
            weights[index] *= side_weight
    if record.task == "attention":
        header = OBSERVATION_HEADER.search(record.answer) if observation_weight is not None else None
        observation_from = header.start() if header is not None else len(record.answer) + len(IM_END)
        for position, (token, (start, _)) in enumerate(zip(answer, encoded.offsets, strict=True)):
            if token in digit_ids:
                weights[position] = coordinate_weight
                if observation_weight is not None and start >= observation_from:
                    weights[position] = observation_weight
    return TokenisedRecord(prompt + answer, len(prompt), weights, record.task)


def sentence_openings(answer: str, token_ends: Sequence[int]) -> list[tuple[int, str]]:
    """Each of ``answer``'s sentences with the index of the token that opens it: the first token
    ending after the sentence starts (a byte-level token holds the space before a word, so it may
    start before the sentence does).  In a structured report this is the token where a positive
    and a negative statement part ("ĠPleural" / "ĠNo"), so it carries the finding's decision.
    ``token_ends`` is each token's end offset in ``answer``."""
    ends = np.asarray(token_ends, dtype=np.int64)
    found: list[tuple[int, str]] = []
    for start, _, sentence in sentence_spans(answer):
        index = int(np.searchsorted(ends, start, side="right"))
        if index < len(ends) and (not found or found[-1][0] != index):
            found.append((index, sentence))
    return found


def side_word_tokens(answer: str, token_ends: Sequence[int]) -> list[int]:
    """The indices of the tokens where a word naming a side (:data:`inference.labeller.SIDE_WORDS`)
    starts in ``answer``: in a report that names sides, where the side is decided."""
    ends = np.asarray(token_ends, dtype=np.int64)
    found = [int(np.searchsorted(ends, word.start(), side="right")) for word in SIDE_WORDS.finditer(answer)]
    return [index for index in found if index < len(ends)]


def sentence_first_tokens(answer: str, token_ends: Sequence[int]) -> IntArray:
    """The indices of :func:`sentence_openings`."""
    return np.asarray([index for index, _ in sentence_openings(answer, token_ends)], dtype=np.int64)


@dataclass(frozen=True)
class MicroBatch:
    """The records of one image as one shared-prefix batch, and where its targets are."""

    plan: PrefixPlan
    target_rows: IntArray  # (N,) batch row of each target
    target_positions: IntArray  # (N,) suffix position whose output predicts it
    target_ids: IntArray  # (N,)
    target_weights: npt.NDArray[np.float32]  # (N,)
    target_tasks: IntArray  # (N,) TASK_CODES

    @property
    def tokens(self) -> int:
        """Tokens the model runs: the prefix once, plus every row's suffix."""
        return self.plan.prefix_length + int(self.plan.attention_mask[:, self.plan.prefix_length :].sum())


def plan_micro_batch(records: Sequence[TokenisedRecord], image_grid_thw: IntArray, spec: TokenSpec) -> MicroBatch:
    """Plan one image's records; every target lies in its row's suffix."""
    if not records:
        raise ValueError("a micro-batch needs at least one record")
    shortest_prompt = min(r.prompt_length for r in records)
    plan = plan_shared_prefix([r.ids for r in records], image_grid_thw, spec, max_prefix_length=shortest_prompt - 1)
    prefix = plan.prefix_length
    rows, positions, ids, weights, tasks = [], [], [], [], []
    for row, record in enumerate(records):
        count = record.target_count
        full_positions = np.arange(record.prompt_length, len(record.ids))
        rows.append(np.full(count, row, dtype=np.int64))
        positions.append(full_positions - 1 - prefix)
        ids.append(np.asarray(record.ids[record.prompt_length :], dtype=np.int64))
        weights.append(record.weights)
        tasks.append(np.full(count, TASK_CODES[record.task], dtype=np.int64))
    return MicroBatch(
        plan=plan,
        target_rows=np.concatenate(rows),
        target_positions=np.concatenate(positions),
        target_ids=np.concatenate(ids),
        target_weights=np.concatenate(weights).astype(np.float32),
        target_tasks=np.concatenate(tasks),
    )
