"""Fixtures for the pipeline tests: a small chest CR template and an in-process harness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from tests.gateway.pipeline.support import Harness


@pytest.fixture(scope="session")
def template(chest_cr_path: Path) -> Dataset:
    """The real chest CR cut to 64 x 64 pixels (fast to store and encode)."""
    dataset = pydicom.dcmread(chest_cr_path)
    pixels = dataset.pixel_array[:64, :64].copy()
    dataset.Rows, dataset.Columns = 64, 64
    dataset.PixelData = pixels.tobytes()
    return dataset


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    created = Harness.create(tmp_path)
    try:
        yield created
    finally:
        created.close()
