"""Prompts: GazeX's texts, and the Qwen2-VL chat format exactly as Hugging Face renders it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from inference.prompts import (
    GAZEX_ATTENTION_PROMPT,
    GAZEX_EXAMINE_PROMPT,
    IMAGE_PAD,
    PromptEncoder,
    attention_text,
    expand_image_pad,
    render_chat,
)


def test_gazex_prompts_are_gazex_own_words() -> None:
    assert GAZEX_EXAMINE_PROMPT == (
        "Given an X-ray image, mimic a radiologist's eye-tracking pattern and generate a description of the image."
    )
    assert GAZEX_ATTENTION_PROMPT.startswith("Given an X-ray image and a radiologist's description '{sentence}', ")
    assert "'visual clues: [(xmin1, ymin1)(xmax1, ymax1)(centroidx1, centroidy1), " in GAZEX_ATTENTION_PROMPT
    assert GAZEX_ATTENTION_PROMPT.endswith("observation: [(xmin, ymin)(xmax, ymax)(centroidx, centroidy)]'.")


def test_render_chat_matches_the_qwen2_vl_chat_template(tiny_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    user = attention_text(GAZEX_ATTENTION_PROMPT, "No pleural effusion.")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user}]}]
    assert render_chat(user) == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    answer = "visual clues : [(1,2)(3,4)(2,3)] observation : [(0,0)(9,9)(4,4)]"
    conversation = [*messages, {"role": "assistant", "content": answer}]
    assert render_chat(user, assistant_text=answer) == hf.apply_chat_template(conversation, tokenize=False)


def test_prompt_tokens_match_the_hugging_face_tokenizer(tiny_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    tokenizer = Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))
    encoder = PromptEncoder(tokenizer, GAZEX_EXAMINE_PROMPT, GAZEX_ATTENTION_PROMPT)
    ids = encoder.attention("Heart size is normal.", image_tokens=12)
    text = expand_image_pad(render_chat(attention_text(GAZEX_ATTENTION_PROMPT, "Heart size is normal.")), 12)
    assert list(ids) == hf(text, add_special_tokens=False)["input_ids"]
    pad = tokenizer.token_to_id(IMAGE_PAD)
    assert ids.count(pad) == 12
    assert encoder.decode(ids, skip_special_tokens=False) == text


def test_prompts_of_one_image_share_a_long_prefix(tiny_checkpoint: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))
    encoder = PromptEncoder(tokenizer, GAZEX_EXAMINE_PROMPT, GAZEX_ATTENTION_PROMPT)
    a = encoder.attention("No pneumothorax.", 12)
    b = encoder.attention("Mild cardiomegaly.", 12)
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    pad = tokenizer.token_to_id(IMAGE_PAD)
    assert shared > max(i for i, t in enumerate(a) if t == pad)  # the image and the text before the sentence


def test_placeholders_are_checked() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        expand_image_pad("no image here", 3)
    with pytest.raises(ValueError, match="positive"):
        expand_image_pad(render_chat("x"), 0)
    with pytest.raises(ValueError, match="sentence"):
        attention_text("no slot", "x")
    assert attention_text("say '{sentence}'", "it's {odd}") == "say 'it's {odd}'"
