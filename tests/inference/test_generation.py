"""Backend-neutral planning: M-RoPE positions (against Hugging Face) and the shared-prefix plan."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inference.generation import (
    GenerationRequest,
    TokenSpec,
    common_prefix_length,
    mrope_positions,
    plan_shared_prefix,
)
from inference.vision_input import EncodedImage

IMAGE = 9
SPEC = TokenSpec(
    end_token_ids=(2, 3),
    pad_token_id=3,
    image_token_id=IMAGE,
    vision_start_token_id=7,
    vision_end_token_id=8,
    spatial_merge_size=2,
)


def prompt(image_tokens: int, tail: list[int], head: tuple[int, ...] = (1, 4, 5)) -> tuple[int, ...]:
    return (*head, 7, *([IMAGE] * image_tokens), 8, 11, 12, *tail)


def test_common_prefix_length() -> None:
    assert common_prefix_length([(1, 2, 3), (1, 2, 4), (1, 2)]) == 2
    assert common_prefix_length([(1, 2, 3)]) == 3
    assert common_prefix_length([(1,), (2,)]) == 0
    assert common_prefix_length([]) == 0


def test_mrope_positions_lay_the_image_out_on_its_grid() -> None:
    grid = np.array([[1, 4, 6]])  # merged: 2 x 3 = 6 tokens
    ids = prompt(6, [20, 21])
    positions, delta = mrope_positions(ids, grid, IMAGE, 2)
    assert positions[:, :4].tolist() == [[0, 1, 2, 3]] * 3
    image = positions[:, 4:10]
    assert image[0].tolist() == [4] * 6
    assert image[1].tolist() == [4, 4, 4, 5, 5, 5]
    assert image[2].tolist() == [4, 5, 6, 4, 5, 6]
    # text resumes at start + max(merged h, w) = 4 + 3
    assert positions[:, 10].tolist() == [7, 7, 7]
    assert delta == int(positions.max()) + 1 - len(ids)


@pytest.mark.parametrize("grid", [(1, 4, 6), (1, 8, 2), (1, 2, 2), (1, 10, 10)])
def test_mrope_positions_match_hugging_face(tiny_model: Any, grid: tuple[int, int, int]) -> None:
    import torch

    model = tiny_model
    image_token = model.config.image_token_id
    count = grid[0] * grid[1] * grid[2] // 4
    ids = [5, 6, model.config.vision_start_token_id, *([image_token] * count), model.config.vision_end_token_id, 30, 31]
    grids = np.array([grid])
    ours, delta = mrope_positions(ids, grids, image_token, 2)
    input_ids = torch.tensor([ids])
    theirs, their_delta = model.model.get_rope_index(
        input_ids, mm_token_type_ids=(input_ids == image_token).int(), image_grid_thw=torch.tensor(grids)
    )
    np.testing.assert_array_equal(ours, theirs[:, 0].numpy())
    assert delta == int(their_delta[0, 0])


def test_mrope_positions_check_the_image_tokens() -> None:
    with pytest.raises(ValueError, match="needs 6 consecutive image tokens"):
        mrope_positions(prompt(5, [1]), np.array([[1, 4, 6]]), IMAGE, 2)
    with pytest.raises(ValueError, match="more image-token runs than there are images"):
        mrope_positions(prompt(6, [1, 7, *([IMAGE] * 6)]), np.array([[1, 4, 6]]), IMAGE, 2)
    with pytest.raises(ValueError, match="0 image-token runs for 1 images"):
        mrope_positions((1, 2, 3), np.array([[1, 4, 6]]), IMAGE, 2)


def test_plan_shares_everything_up_to_the_sentences() -> None:
    grid = np.array([[1, 4, 6]])
    prompts = [prompt(6, [40, 41, 42, 50]), prompt(6, [40, 43, 50]), prompt(6, [40, 44, 45, 46, 47, 50])]
    plan = plan_shared_prefix(prompts, grid, SPEC)
    assert plan.prefix_length == 14  # head, vision start, image, vision end, 11, 12 and the shared 40
    assert plan.image_slice == slice(4, 10)
    assert plan.suffix_ids.tolist() == [[41, 42, 50, 3, 3], [43, 50, 3, 3, 3], [44, 45, 46, 47, 50]]
    assert plan.attention_mask[:, :14].all()
    assert plan.attention_mask[:, 14:].tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert plan.last_index.tolist() == [2, 1, 4]
    for row, p in enumerate(prompts):
        full, delta = mrope_positions(p, grid, IMAGE, 2)
        np.testing.assert_array_equal(plan.prefix_positions, full[:, :14])
        np.testing.assert_array_equal(plan.suffix_positions[:, row, : len(p) - 14], full[:, 14:])
        assert plan.next_position[row] == len(p) + delta == full[0, -1] + 1


def test_one_prompt_keeps_one_token_for_the_suffix() -> None:
    plan = plan_shared_prefix([prompt(6, [40, 41])], np.array([[1, 4, 6]]), SPEC)
    assert plan.suffix_ids.tolist() == [[41]]
    assert plan.prefix_length == len(prompt(6, [40, 41])) - 1


def test_prompts_about_different_images_cannot_share() -> None:
    with pytest.raises(ValueError, match="must share the image"):
        plan_shared_prefix([prompt(6, [1], head=(1,)), prompt(6, [1], head=(2,))], np.array([[1, 4, 6]]), SPEC)
    with pytest.raises(ValueError, match="no image tokens"):
        plan_shared_prefix([(1, 2, 3)], np.array([[1, 4, 6]]), SPEC)


def test_requests_validate_their_budget() -> None:
    image = EncodedImage.create(np.zeros((24, 1176), np.float32), np.array([[1, 4, 6]]), 2)
    with pytest.raises(ValueError, match="at least one prompt"):
        GenerationRequest(image=image, prompts=(), max_new_tokens=4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationRequest(image=image, prompts=((1,),), max_new_tokens=0)
    with pytest.raises(ValueError, match="min_new_tokens"):
        GenerationRequest(image=image, prompts=((1,),), max_new_tokens=4, min_new_tokens=5)
