"""Training batches: prompts encoded as the runtime encodes them, targets on the answer only,
and a shared-prefix batch that scores exactly what one forward pass per record would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.checkpoint import open_checkpoint
from inference.config import GenerationSettings, Prompts
from inference.prompts import IM_END, PromptEncoder
from inference.training.batching import (
    answer_lengths,
    digit_token_ids,
    generation_shortfalls,
    plan_micro_batch,
    sentence_first_tokens,
    side_word_tokens,
    tokenise_record,
)
from inference.training.data import TrainingRecord

PROMPTS = Prompts(examine="Describe the chest X-ray.", attention="Locate '{sentence}'")


def _records(image: Path) -> list[TrainingRecord]:
    return [
        TrainingRecord(0, image, "examine", PROMPTS.examine, "No pneumothorax. Normal heart size."),
        TrainingRecord(
            1,
            image,
            "attention",
            "Locate 'No pneumothorax.'",
            "visual clues : [(12,34)(56,78)(34,56)] observation : [(10,20)(90,95)(50,57)]",
            "No pneumothorax.",
        ),
        TrainingRecord(
            2, image, "attention", "Locate 'Normal heart size.'", "observation : [(40,45)(70,80)(55,62)]", "x"
        ),
    ]


def test_the_prompt_is_the_runtime_prompt_and_only_the_answer_is_scored(tiny_checkpoint: Path) -> None:
    checkpoint = open_checkpoint(tiny_checkpoint)
    tokenizer = checkpoint.tokenizer
    encoder = PromptEncoder(tokenizer, PROMPTS.examine, PROMPTS.attention)
    record = _records(tiny_checkpoint)[1]
    digits = digit_token_ids(tokenizer)
    assert len(digits) == 10
    tokenised = tokenise_record(record, encoder, tokenizer, 4, coordinate_weight=3.0, digit_ids=digits)
    prompt = encoder.attention("No pneumothorax.", 4)
    assert tokenised.ids[: tokenised.prompt_length] == prompt
    answer = tokenizer.decode(list(tokenised.ids[tokenised.prompt_length :]), skip_special_tokens=False)
    assert answer == record.answer + IM_END
    targets = tokenised.ids[tokenised.prompt_length :]
    assert [w for t, w in zip(targets, tokenised.weights, strict=True) if t in digits] == [3.0] * 24
    assert {w for t, w in zip(targets, tokenised.weights, strict=True) if t not in digits} == {1.0}
    examine = tokenise_record(_records(tiny_checkpoint)[0], encoder, tokenizer, 4, coordinate_weight=3.0)
    assert set(examine.weights.tolist()) == {1.0}  # coordinates are weighted in attention answers only


def test_each_examine_sentence_opens_with_its_decision_token_weighted(tiny_checkpoint: Path) -> None:
    checkpoint = open_checkpoint(tiny_checkpoint)
    tokenizer = checkpoint.tokenizer
    encoder = PromptEncoder(tokenizer, PROMPTS.examine, PROMPTS.attention)
    examine, attention = _records(tiny_checkpoint)[:2]
    weighted = tokenise_record(examine, encoder, tokenizer, 4, examine_weight=2.0, decision_weight=5.0)
    targets = list(weighted.ids[weighted.prompt_length :])
    heavy = [i for i, w in enumerate(weighted.weights) if w == 10.0]
    assert set(weighted.weights.tolist()) == {2.0, 10.0}
    # "No pneumothorax." and " Normal heart size.": each one's first token, whatever the tokenizer
    encoded = tokenizer.encode(examine.answer + IM_END, add_special_tokens=False)
    assert encoded.ids == targets
    opening = [i for i, (start, end) in enumerate(encoded.offsets) if start <= 0 < end or start <= 17 < end]
    assert heavy == opening and len(heavy) == 2
    plain = tokenise_record(attention, encoder, tokenizer, 4, decision_weight=5.0)
    assert set(plain.weights.tolist()) == {1.0}  # attention answers have no decisions


def test_a_decision_that_states_a_finding_present_can_weigh_more(tiny_checkpoint: Path) -> None:
    checkpoint = open_checkpoint(tiny_checkpoint)
    tokenizer = checkpoint.tokenizer
    encoder = PromptEncoder(tokenizer, PROMPTS.examine, PROMPTS.attention)
    answer = "The trachea is midline. No pneumothorax. Small left pleural effusion."
    record = TrainingRecord(0, tiny_checkpoint, "examine", PROMPTS.examine, answer)
    weighted = tokenise_record(record, encoder, tokenizer, 4, decision_weight=2.0, positive_weight=3.0)
    encoded = tokenizer.encode(answer + IM_END, add_special_tokens=False)
    openings = sentence_first_tokens(answer, [end for _, end in encoded.offsets]).tolist()
    assert len(openings) == 3
    # "The trachea ..." states no finding and "No pneumothorax." an absent one: the decision weight
    # only; the effusion's opening token also the positive weight; everything else 1
    assert [float(weighted.weights[i]) for i in openings] == [2.0, 2.0, 6.0]
    rest = np.delete(weighted.weights, openings)
    assert set(rest.tolist()) == {1.0}


def test_the_observation_digits_can_weigh_more_than_the_clues(tiny_checkpoint: Path) -> None:
    checkpoint = open_checkpoint(tiny_checkpoint)
    tokenizer = checkpoint.tokenizer
    encoder = PromptEncoder(tokenizer, PROMPTS.examine, PROMPTS.attention)
    digits = digit_token_ids(tokenizer)
    with_clues, observation_only = _records(tiny_checkpoint)[1:]
    weighted = tokenise_record(
        with_clues, encoder, tokenizer, 4, coordinate_weight=2.0, observation_weight=6.0, digit_ids=digits
    )
    targets = weighted.ids[weighted.prompt_length :]
    digit_weights = [w for t, w in zip(targets, weighted.weights, strict=True) if t in digits]
    assert digit_weights == [2.0] * 12 + [6.0] * 12  # one clue (6 two-digit numbers), then the observation
    alone = tokenise_record(observation_only, encoder, tokenizer, 4, observation_weight=6.0, digit_ids=digits)
    assert sorted(set(alone.weights.tolist())) == [1.0, 6.0]
    same = tokenise_record(with_clues, encoder, tokenizer, 4, coordinate_weight=2.0, digit_ids=digits)
    assert {w for t, w in zip(targets, same.weights, strict=True) if t in digits} == {2.0}


def test_the_words_that_name_a_side_can_weigh_more(tiny_checkpoint: Path) -> None:
    checkpoint = open_checkpoint(tiny_checkpoint)
    tokenizer = checkpoint.tokenizer
    encoder = PromptEncoder(tokenizer, PROMPTS.examine, PROMPTS.attention)
    answer = "Small left pleural effusion. Nodule in the right upper lobe. Bilateral effusions. No pneumothorax."
    record = TrainingRecord(0, tiny_checkpoint, "examine", PROMPTS.examine, answer)
    weighted = tokenise_record(record, encoder, tokenizer, 4, examine_weight=2.0, side_weight=4.0)
    encoded = tokenizer.encode(answer + IM_END, add_special_tokens=False)
    sides = side_word_tokens(answer, [end for _, end in encoded.offsets])
    # each side word's first token, whatever the tokenizer makes of the word
    starts = [answer.index(word) for word in ("left", "right", "Bilateral")]
    assert sides == [next(i for i, (_, end) in enumerate(encoded.offsets) if end > start) for start in starts]
    assert [float(weighted.weights[i]) for i in sides] == [8.0] * 3
    assert set(np.delete(weighted.weights, sides).tolist()) == {2.0}
    # with the decision weight too, a sentence that opens with its side multiplies both
    both = tokenise_record(record, encoder, tokenizer, 4, decision_weight=3.0, side_weight=4.0)
    opening = int(sentence_first_tokens(answer, [end for _, end in encoded.offsets])[2])
    assert opening == sides[2] and float(both.weights[opening]) == 12.0
    attention = _records(tiny_checkpoint)[1]
    assert set(tokenise_record(attention, encoder, tokenizer, 4, side_weight=4.0).weights.tolist()) == {1.0}
    assert side_word_tokens("The tube is rightly placed.", [3, 8, 11, 19, 26, 27]) == []


@pytest.mark.parametrize(
    ("answer", "ends", "expected"),
    [
        ("No effusion. Big heart.", [2, 12, 13, 17, 23, 24], [0, 3]),  # " Big" starts at the space, ends after
        ("A. B.", [1, 2, 4, 5], [0, 2]),
        ("", [0], []),
    ],
)
def test_sentence_first_tokens(answer: str, ends: list[int], expected: list[int]) -> None:
    assert sentence_first_tokens(answer, ends).tolist() == expected


def test_a_shared_prefix_batch_scores_what_separate_forward_passes_do(tiny_checkpoint: Path, tiny_model: Any) -> None:
    import torch

    from inference.training.trainer import _Model

    checkpoint = open_checkpoint(tiny_checkpoint)
    tokenizer = checkpoint.tokenizer
    encoder = PromptEncoder(tokenizer, PROMPTS.examine, PROMPTS.attention)
    rng = np.random.default_rng(0)
    pixel_values = rng.normal(size=(16, 3 * 2 * 14 * 14)).astype(np.float32)
    grid = np.array([[1, 4, 4]], dtype=np.int64)
    tokenised = [tokenise_record(r, encoder, tokenizer, 4) for r in _records(tiny_checkpoint)]
    batch = plan_micro_batch(tokenised, grid, checkpoint.tokens)
    assert batch.plan.prefix_length < min(t.prompt_length for t in tokenised)
    assert len(batch.target_ids) == sum(t.target_count for t in tokenised)
    with torch.no_grad():
        shared = _Model(tiny_model).loss(batch, pixel_values, grid)[0].numpy()

        expected = []
        for record in tokenised:
            ids = torch.tensor([record.ids])
            output = tiny_model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values=torch.from_numpy(pixel_values),
                image_grid_thw=torch.from_numpy(grid),
                mm_token_type_ids=(ids == checkpoint.tokens.image_token_id).int(),
            )
            logits = output.logits[0, record.prompt_length - 1 : -1]
            targets = ids[0, record.prompt_length :]
            expected.append(torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none").numpy())
    np.testing.assert_allclose(shared, np.concatenate(expected), rtol=1e-4, atol=1e-4)


def test_a_single_record_keeps_its_targets_in_the_suffix(tiny_checkpoint: Path) -> None:
    checkpoint = open_checkpoint(tiny_checkpoint)
    encoder = PromptEncoder(checkpoint.tokenizer, PROMPTS.examine, PROMPTS.attention)
    record = tokenise_record(_records(tiny_checkpoint)[0], encoder, checkpoint.tokenizer, 4)
    batch = plan_micro_batch([record], np.array([[1, 4, 4]]), checkpoint.tokens)
    assert batch.plan.prefix_length == record.prompt_length - 1
    assert batch.target_positions.min() == 0
    with pytest.raises(ValueError, match="at least one"):
        plan_micro_batch([], np.array([[1, 4, 4]]), checkpoint.tokens)


def test_answer_lengths_count_the_tokens_generation_must_produce(tiny_checkpoint: Path) -> None:
    tokenizer = open_checkpoint(tiny_checkpoint).tokenizer
    records = _records(tiny_checkpoint)
    lengths = answer_lengths(records, tokenizer)
    expected = [len(tokenizer.encode(r.answer + IM_END, add_special_tokens=False).ids) for r in records]
    assert lengths == {"examine": expected[:1], "attention": expected[1:]}


def test_a_generation_limit_shorter_than_the_training_answers_is_named_with_its_share() -> None:
    lengths: dict[Any, list[int]] = {"examine": [50, 60], "attention": [90, 96, 97, 151]}
    messages = generation_shortfalls(lengths, GenerationSettings(160, 96))
    assert messages == [
        "--max-new-tokens-attention 96: 2 of 4 attention answers (50.0 %) are longer (up to 151 tokens with "
        "<|im_end|>); the checkpoint would cut them off when it generates; at least 151 keeps them whole"
    ]
    assert generation_shortfalls(lengths, GenerationSettings(60, 151)) == []
    assert generation_shortfalls({"examine": [], "attention": []}, GenerationSettings(1, 1)) == []
