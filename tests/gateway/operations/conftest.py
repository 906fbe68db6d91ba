"""A gateway database filled by the real pipeline (FakeEngine, fake clock, in-memory sender)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from gateway.pipeline.sender import FakeDestination
from tests.gateway.pipeline.support import Harness, make_image

DESTINATIONS = {
    "archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 104},
    "backup": {"ae_title": "BACKUP", "host": "127.0.0.1", "port": 105},
}


@pytest.fixture(scope="session")
def template(chest_cr_path: Path) -> Dataset:
    """The real chest CR cut to 64 x 64 pixels (fast to store and encode)."""
    dataset = pydicom.dcmread(chest_cr_path)
    pixels = dataset.pixel_array[:64, :64].copy()
    dataset.Rows, dataset.Columns = 64, 64
    dataset.PixelData = pixels.tobytes()
    return dataset


@dataclass
class World:
    """Three studies: a chest CR delivered to ``archive`` and dead at ``backup``, a head CT not
    routed, and a chest CR still being received."""

    harness: Harness
    chest: str
    head: str
    receiving: str
    chest_job: int
    archive_delivery: int
    backup_delivery: int


def settle(harness: Harness, rounds: int = 6) -> None:
    """Complete, analyse and deliver until nothing is due, letting the fake clock pass every backoff."""
    pipeline = harness.pipeline()
    for _ in range(rounds):
        harness.clock.advance(200)
        pipeline.run_burst(complete=True)


@pytest.fixture
def world(tmp_path: Path, template: Dataset) -> Iterator[World]:
    harness = Harness.create(tmp_path, destinations=DESTINATIONS)
    try:
        harness.sender.destinations["backup"] = FakeDestination(reachable=False)
        chest, head, receiving = generate_uid(), generate_uid(), generate_uid()
        series = generate_uid()
        for _ in range(2):
            harness.receive(make_image(template, chest, series, AccessionNumber="ACC12345", ViewPosition="PA"))
        harness.clock.advance(1)
        harness.receive(make_image(template, head, Modality="CT", BodyPartExamined="HEAD"), calling_ae="CTSCANNER")
        settle(harness)
        harness.clock.advance(1)
        harness.receive(make_image(template, receiving, ViewPosition="PA"))
        [job] = harness.rows("SELECT id FROM jobs")
        by_destination = {row.destination: row.id for row in harness.rows("SELECT id, destination FROM deliveries")}
        yield World(harness, chest, head, receiving, job.id, by_destination["archive"], by_destination["backup"])
    finally:
        harness.close()
