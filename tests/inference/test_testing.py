"""The test checkpoint builder: deterministic tokenizer, shapes, and a model brought by the caller."""

from __future__ import annotations

from pathlib import Path

from inference.checkpoint import open_checkpoint
from inference.prompts import QWEN2_VL_SPECIAL_TOKENS
from inference.testing import (
    QWEN2_VL_2B_SHAPE,
    TINY_SHAPE,
    CheckpointShape,
    build_tokenizer,
    make_tiny_checkpoint,
    qwen2_vl_config,
)


def test_tokenizer_is_deterministic_and_has_the_special_tokens() -> None:
    a = build_tokenizer(512, ["a phantom nodule"])
    b = build_tokenizer(512, ["a phantom nodule"])
    assert a.to_str() == b.to_str()
    for token in QWEN2_VL_SPECIAL_TOKENS:
        assert a.token_to_id(token) is not None
    text = "No pleural effusion. (123,45)"
    assert a.decode(a.encode(text).ids) == text


def test_shapes() -> None:
    assert TINY_SHAPE.mrope_section() == [2, 3, 3]
    assert QWEN2_VL_2B_SHAPE.mrope_section() == [16, 24, 24]  # Qwen2-VL-2B's config.json
    assert QWEN2_VL_2B_SHAPE.hidden_size // QWEN2_VL_2B_SHAPE.num_attention_heads == 128


def test_a_model_brought_by_the_caller(tmp_path: Path) -> None:
    from transformers import Qwen2VLForConditionalGeneration

    shape = CheckpointShape(hidden_size=32, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64)
    tokenizer = build_tokenizer(600, ["trained on phantoms"])
    ids = {t: tokenizer.token_to_id(t) for t in QWEN2_VL_SPECIAL_TOKENS}
    model = Qwen2VLForConditionalGeneration(qwen2_vl_config(shape, ids, tokenizer.get_vocab_size()))
    directory = make_tiny_checkpoint(tmp_path / "trained", shape=shape, tokenizer=tokenizer, model=model)
    checkpoint = open_checkpoint(directory)
    assert checkpoint.tokenizer.to_str() == tokenizer.to_str()
    assert checkpoint.tokens.image_token_id == ids["<|image_pad|>"]
