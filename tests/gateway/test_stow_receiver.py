"""The STOW-RS body receiver alone: parts fed in pieces of any size land in the spool byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from gateway.dicom.receive import file_header
from gateway.dicom.store import StoreStatus
from gateway.dicom.stow import StowReceiver
from gateway.spool import Spool
from tests.gateway.web.stow_support import BOUNDARY, dataset_bytes_of, multipart, part10
from tests.ingest_support import small_cr


def receiver(root: Path) -> StowReceiver:
    spool = Spool(root, 0, free_bytes=lambda path: 10**12)
    spool.open()
    return StowReceiver(
        BOUNDARY.encode(),
        spool,
        sop_classes=["1.2.840.10008.5.1.4.1.1.1"],
        transfer_syntaxes=["1.2.840.10008.1.2.1"],
    )


def feed_in_pieces(target: StowReceiver, body: bytes, piece: int) -> None:
    for start in range(0, len(body), piece):
        target.feed(body[start : start + piece])


@pytest.mark.parametrize("piece", [7, 131, 4096, 1 << 30])  # the File Meta Information split, or whole
def test_every_part_is_spooled_behind_our_file_meta_whatever_the_pieces(
    tmp_path: Path, chest_cr: Dataset, piece: int
) -> None:
    instances = [small_cr(chest_cr), small_cr(chest_cr, rows=32, columns=48)]
    files = [part10(instance) for instance in instances]
    target = receiver(tmp_path)
    feed_in_pieces(target, multipart(files), piece)
    parts = target.finish()
    assert [part.failure for part in parts] == [None, None]
    for part, instance, sent in zip(parts, instances, files, strict=True):
        assert part.meta is not None and part.meta.sop_instance_uid == instance.SOPInstanceUID
        assert part.incoming is not None
        header = file_header(instance.SOPClassUID, instance.SOPInstanceUID, "1.2.840.10008.1.2.1")
        dataset = dataset_bytes_of(sent)
        part.incoming.complete()
        assert part.incoming.path.read_bytes() == header + dataset  # ours, not the sender's File Meta Information
        assert part.incoming.content_sha256 == hashlib.sha256(dataset).hexdigest()
    target.discard()
    assert not list(target.spool.incoming_dir.iterdir())


@pytest.mark.parametrize("piece", [5, 1 << 30])
def test_a_part_that_ends_inside_its_file_meta_fails_alone(tmp_path: Path, chest_cr: Dataset, piece: int) -> None:
    good = part10(small_cr(chest_cr))
    target = receiver(tmp_path)
    feed_in_pieces(target, multipart([good[:150], good]), piece)
    cut, whole = target.finish()
    assert cut.failure is not None and cut.failure.status == StoreStatus.CANNOT_UNDERSTAND
    assert "cut short" in cut.failure.reason and cut.incoming is None
    assert whole.failure is None and whole.incoming is not None
    target.discard()
