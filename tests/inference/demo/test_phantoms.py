"""Phantoms are deterministic, keep their geometry at every resolution, and show their findings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference.demo import PhantomConfig, generate_phantom, generate_phantoms
from inference.demo.anatomy import SIDES
from inference.demo.findings import Device, Effusion, Lesion
from inference.demo.phantoms import Phantom
from inference.results import Box

SMALL = (600, 700)  # native rows for tests: realistic geometry, cheap pixels


def _pixels(box: Box, phantom: Phantom, image: np.ndarray) -> tuple[slice, slice]:
    box = box.clipped(phantom.rows, phantom.columns)
    sy, sx = phantom.rows / image.shape[0], phantom.columns / image.shape[1]
    return slice(int(box.y0 / sy), int(np.ceil(box.y1 / sy))), slice(int(box.x0 / sx), int(np.ceil(box.x1 / sx)))


def _grown(box: Box, margin: float) -> Box:
    return Box(box.x0 - margin, box.y0 - margin, box.x1 + margin, box.y1 + margin)


def test_same_seed_and_index_give_the_same_phantom_and_pixels() -> None:
    first, second = generate_phantom(3, 5), generate_phantom(3, 5)
    assert first == second
    assert np.array_equal(first.render(128), second.render(128))
    assert generate_phantom(3, 6) != first
    assert generate_phantom(4, 5) != first


def test_a_phantom_does_not_depend_on_the_others_generated() -> None:
    assert list(generate_phantoms(9, 3, start=4))[-1] == generate_phantom(9, 6)


def test_native_size_and_spacing_are_realistic() -> None:
    phantoms = list(generate_phantoms(1, 12))
    for phantom in phantoms:
        assert 2000 <= phantom.rows <= 2500
        assert 0.8 * phantom.rows <= phantom.columns <= phantom.rows
        assert 350.0 <= phantom.columns * phantom.anatomy.pixel_spacing_mm <= 430.0
    assert {p.acquisition.modality for p in phantoms} == {"CR", "DX"}
    assert {p.acquisition.photometric for p in phantoms} == {"MONOCHROME1", "MONOCHROME2"}
    assert all(12 <= p.acquisition.bits_stored <= 16 for p in phantoms)


def test_a_low_resolution_render_is_the_same_geometry_as_a_downsampled_one() -> None:
    phantom = generate_phantom(2, 1, PhantomConfig.only("nodule", "pleural_effusion", rows=SMALL))
    native = phantom.render(None)
    direct = phantom.render(160)
    downsampled = np.asarray(
        Image.fromarray(native).resize((direct.shape[1], direct.shape[0]), Image.Resampling.BOX), dtype=np.float32
    )
    assert direct.shape[0] == 160 or direct.shape[1] == 160
    assert float(np.mean(np.abs(direct - downsampled))) < 0.02
    # the nodule is where its ground truth says, in both renders
    nodule = next(b for f, b in zip(phantom.findings, phantom.boxes, strict=True) if isinstance(f, Lesion))
    healthy = phantom.without_findings()
    for image, plain in ((native, healthy.render(None)), (direct, healthy.render(160))):
        rows, columns = _pixels(nodule, phantom, image)
        assert image[rows, columns].mean() > plain[rows, columns].mean() + 0.02


def _difference(phantom: Phantom, max_side: int = 256) -> np.ndarray:
    return phantom.render(max_side).astype(np.float64) - phantom.without_findings().render(max_side)


@pytest.mark.parametrize(
    ("kind", "sign"),
    [
        ("nodule", 1),
        ("mass", 1),
        ("pleural_effusion", 1),
        ("consolidation", 1),
        ("pneumothorax", -1),
        ("endotracheal_tube", 1),
        ("central_venous_catheter", 1),
    ],
)
def test_a_finding_changes_the_pixels_inside_its_ground_truth_box_only(kind: str, sign: int) -> None:
    for index in range(4):
        phantom = generate_phantom(21, index, PhantomConfig.only(kind, rows=SMALL))
        difference = _difference(phantom)
        inside = np.zeros(difference.shape, dtype=bool)
        for box in phantom.boxes:
            rows, columns = _pixels(_grown(box, 0.015 * phantom.columns), phantom, difference)
            inside[rows, columns] = True
        changed = np.abs(difference)
        assert changed[inside].sum() >= 0.97 * changed.sum(), (kind, index)
        assert sign * difference[inside].mean() > 0.0, (kind, index)


def test_a_nodule_stands_out_from_the_surrounding_lung() -> None:
    for index in range(8):
        phantom = generate_phantom(5, index, PhantomConfig.only("nodule", rows=SMALL))
        image = phantom.render(None).astype(np.float64)
        lesion = phantom.findings[0]
        assert isinstance(lesion, Lesion)
        ys, xs = np.mgrid[0 : phantom.rows, 0 : phantom.columns] + 0.5
        radius = np.hypot(xs - lesion.cx, ys - lesion.cy) / lesion.radius
        core = image[radius < 0.6]
        ring = image[(radius > 1.6) & (radius < 2.6)]
        # brighter than its surroundings by well over the surroundings' own variation
        assert core.mean() - ring.mean() > 0.5 * ring.std(), index
        assert core.mean() - ring.mean() > 0.02, index


def test_an_effusion_blunts_the_costophrenic_angle_and_spares_the_other_side() -> None:
    for index in range(6):
        phantom = generate_phantom(8, index, PhantomConfig.only("pleural_effusion", rows=SMALL))
        difference = _difference(phantom)
        sides = {f.side for f in phantom.findings if isinstance(f, Effusion)}
        for side in SIDES:
            rows, columns = _pixels(phantom.anatomy.costophrenic_box(side), phantom, difference)
            change = difference[rows, columns].mean()
            if side in sides:
                assert change > 0.015, (index, side)
            else:
                assert abs(change) < 0.002, (index, side)


def _measured_cardiothoracic_ratio(phantom: Phantom) -> float:
    """Heart width over thoracic width, measured on the pixels as a radiologist does.

    Row by row between the carina and the diaphragm: the bright run through the midline is
    the cardiomediastinal silhouette and the dark runs either side of it are the lungs.  The
    heart's width is from its rightmost to its leftmost border (at whatever rows), the
    thoracic width the widest span from one lung's lateral margin to the other's.
    """
    image = phantom.render(512).astype(np.float64)
    sy, sx = phantom.rows / image.shape[0], phantom.columns / image.shape[1]
    chest_rows, chest_columns = _pixels(phantom.anatomy.chest_box(), phantom, image)
    chest = image[chest_rows, chest_columns]
    threshold = 0.5 * (np.percentile(chest, 10) + np.percentile(chest, 90))
    middle = int(phantom.anatomy.midline / sx)
    heart_left, heart_right, thorax = image.shape[1], 0, 0
    top, bottom = int(phantom.anatomy.carina_y / sy), int(min(phantom.anatomy.dome_y) / sy)
    for row in range(top, bottom, 2):
        profile = image[row - 1 : row + 2].mean(axis=0)
        left = right = middle
        while left > 0 and profile[left - 1] >= threshold:
            left -= 1
        while right < len(profile) - 1 and profile[right + 1] >= threshold:
            right += 1
        outer_left, outer_right = left - 1, right + 1
        while outer_left > 0 and 0.1 < profile[outer_left - 1] < threshold:
            outer_left -= 1
        while outer_right < len(profile) - 1 and 0.1 < profile[outer_right + 1] < threshold:
            outer_right += 1
        if left - outer_left < 5 or outer_right - right < 5:
            continue  # no lung on one side at this level
        heart_left, heart_right = min(heart_left, left), max(heart_right, right)
        thorax = max(thorax, outer_right - outer_left)
    return (heart_right - heart_left) / thorax


def test_cardiomegaly_shows_a_cardiothoracic_ratio_over_one_half() -> None:
    for index in range(4):
        enlarged = generate_phantom(13, index, PhantomConfig.only("cardiomegaly", rows=SMALL))
        normal = generate_phantom(13, index, PhantomConfig.only(rows=SMALL))
        measured_enlarged = _measured_cardiothoracic_ratio(enlarged)
        measured_normal = _measured_cardiothoracic_ratio(normal)
        assert measured_enlarged > 0.5, index
        assert measured_normal < 0.5, index
        assert abs(measured_enlarged - enlarged.anatomy.cardiothoracic_ratio) < 0.03
        assert abs(measured_normal - normal.anatomy.cardiothoracic_ratio) < 0.03


def test_ground_truth_boxes_lie_inside_the_image_and_the_chest() -> None:
    for phantom in generate_phantoms(17, 40):
        chest = phantom.anatomy.chest_box()
        for finding, box in zip(phantom.findings, phantom.boxes, strict=True):
            assert 0 <= box.x0 < box.x1 <= phantom.columns
            assert 0 <= box.y0 < box.y1 <= phantom.rows
            if not isinstance(finding, Device):
                assert box.iou(chest) > 0.0
                assert box.center.x > chest.x0 and box.center.x < chest.x1


def test_forced_and_excluded_findings_are_respected() -> None:
    for phantom in generate_phantoms(6, 10, PhantomConfig.only("mass", "central_venous_catheter")):
        kinds = sorted(getattr(f, "kind", f.label) for f in phantom.findings)
        assert kinds == ["central_venous_catheter", "mass"]
    with pytest.raises(ValueError, match="unknown finding kinds"):
        PhantomConfig(force=frozenset({"fracture"}))
    with pytest.raises(ValueError, match="at most one lung lesion"):
        PhantomConfig.only("nodule", "mass")
