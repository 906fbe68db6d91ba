"""Dense grounding targets from attention records: labels, frames, small and large boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.geometry import DownscaledFrame, NormalizedFrame
from inference.training.data import TrainingRecord
from inference.training.grounding import (
    grid_positions,
    grounding_labels,
    kind_scale,
    label_kind,
    token_targets,
)


def _attention(index: int, sentence: str, answer: str) -> TrainingRecord:
    return TrainingRecord(index, Path("image.png"), "attention", f"Locate '{sentence}'", answer, sentence)


EFFUSION = _attention(
    1,
    "Small right pleural effusion.",
    "visual clues : [(10,60)(40,90)(25,75)] observation : [(0,50)(50,100)(25,75)]",
)
NODULE = _attention(2, "There is a nodule in the left upper zone.", "observation : [(61,21)(64,24)(62,22)]")
NEGATIVE = _attention(3, "No pneumothorax.", "observation : [(0,0)(100,100)(50,50)]")
EXAMINE = TrainingRecord(0, Path("image.png"), "examine", "Describe this chest X-ray.", "Small right pleural effusion.")


def test_the_labels_are_the_findings_stated_present_in_attention_records() -> None:
    assert grounding_labels([EXAMINE, EFFUSION, NODULE, NEGATIVE]) == ["nodule", "pleural_effusion"]
    assert grounding_labels([EXAMINE, NEGATIVE]) == []


def test_a_box_marks_the_cells_it_covers_and_a_small_box_its_centre_cell() -> None:
    labels = ["nodule", "pleural_effusion"]
    targets = token_targets([EFFUSION, NODULE, NEGATIVE, EXAMINE], labels, NormalizedFrame(100), 400, 300, (4, 5))
    grid = targets.reshape(4, 5, 2)
    effusion = np.zeros((4, 5))
    effusion[2:, :3] = 1  # x 0..2.5 cells (the third cell half covered), y 2..4
    np.testing.assert_array_equal(grid[:, :, 1], effusion)
    nodule = np.zeros((4, 5))
    nodule[0, 3] = 1  # a box smaller than a cell: only the cell under its centre (3.1, 0.88)
    np.testing.assert_array_equal(grid[:, :, 0], nodule)


def test_downscaled_coordinates_map_through_the_source_size() -> None:
    record = _attention(4, "Right pleural effusion.", "observation : [(0,50)(25,100)(12,75)]")
    # downscaled:4 on a 400 x 200 image: the box is x 0..100 px (half the width), y 200..400 px (lower half)
    targets = token_targets([record], ["pleural_effusion"], DownscaledFrame(4), 400, 200, (2, 2)).reshape(2, 2)
    np.testing.assert_array_equal(targets, [[0, 0], [1, 0]])


BILATERAL = _attention(5, "Bilateral pleural effusions, small.", "observation : [(0,60)(100,100)(50,80)]")
DEVICE = _attention(6, "Endotracheal tube in place.", "observation : [(45,0)(55,30)(50,15)]")


def test_with_sides_the_labels_and_targets_are_split_by_the_named_side() -> None:
    records = [EXAMINE, EFFUSION, NODULE, NEGATIVE, BILATERAL, DEVICE]
    labels = grounding_labels(records, sides=True)
    assert labels == ["endotracheal_tube", "nodule:left", "pleural_effusion:bilateral", "pleural_effusion:right"]
    assert grounding_labels(records) == ["endotracheal_tube", "nodule", "pleural_effusion"]
    grid = token_targets(records, labels, NormalizedFrame(100), 400, 300, (4, 5), sides=True).reshape(4, 5, 4)
    assert grid[:, :, 3].sum() == 6  # the right effusion's box alone, as without sides
    assert grid[:, :, 2][3].tolist() == [1, 1, 1, 1, 1]  # the bilateral effusion's: the whole bottom row
    assert grid[:, :, 1].sum() == 1 and grid[0, 3, 1] == 1  # the left nodule's centre cell
    assert grid[:, :, 0].sum() > 0


def test_the_kind_scale_gives_each_label_the_weight_a_kind_had_without_sides() -> None:
    records = [EXAMINE, EFFUSION, NODULE, NEGATIVE, BILATERAL, DEVICE]
    assert kind_scale(grounding_labels(records)) == 1.0  # unsplit: the losses are unchanged
    sided = grounding_labels(records, sides=True)
    assert [label_kind(label) for label in sided] == [
        "endotracheal_tube",
        "nodule",
        "pleural_effusion",
        "pleural_effusion",
    ]
    assert kind_scale(sided) == 4 / 3  # 4 labels of 3 kinds: the mean over labels times 4/3
    assert kind_scale([]) == 1.0


def test_grid_positions_are_the_cell_centres_in_row_major_order() -> None:
    positions = grid_positions(2, 4)
    assert positions.dtype == np.float32 and positions.shape == (8, 2)
    np.testing.assert_allclose(positions[:4, 0], 0.25)  # first row
    np.testing.assert_allclose(positions[4:, 0], 0.75)
    np.testing.assert_allclose(positions[:4, 1], [0.125, 0.375, 0.625, 0.875])
