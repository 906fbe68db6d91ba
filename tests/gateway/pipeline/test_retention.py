"""Retention: finished work only, after retention_days or above the disk watermark; unindexed files too."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from gateway.pipeline.completer import Completer
from gateway.pipeline.retention import Retention
from tests.gateway.pipeline.support import Harness, make_image
from tests.gateway.pipeline.test_delivery import deliverer, prepare
from tests.gateway.pipeline.test_worker import queue_study


def retention(harness: Harness, disk_use: float = 10.0) -> Retention:
    return Retention(harness.engine, harness.settings, harness.clock, disk_use=lambda _: disk_use)


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".lock"))


def test_finished_studies_lose_their_files_after_retention_days_and_keep_their_rows(
    harness: Harness, template: Dataset
) -> None:
    prepare(harness, template)
    deliverer(harness).run_once()  # delivered: finished
    queue_study(harness, template)  # a second study, queued: not finished
    spool, outbox = harness.settings.storage.spool_path, harness.settings.storage.outbox_path
    assert len(files(outbox)) == 3 and len(files(spool)) == 2
    harness.clock.advance(29 * 86400)
    assert retention(harness).run().studies_purged == 0  # 29 days: kept
    harness.clock.advance(2 * 86400)
    report = retention(harness).run()
    assert (report.studies_purged, report.spool_files_removed, report.outbox_files_removed) == (1, 1, 3)
    assert files(outbox) == [] and len(files(spool)) == 1  # the queued study's file stays
    assert len(harness.rows("SELECT * FROM instances")) == 2  # the record stays
    assert len(harness.rows("SELECT * FROM outputs WHERE purged_at IS NOT NULL")) == 3
    assert len(harness.rows("SELECT * FROM study_states WHERE purged_at IS NOT NULL")) == 1
    assert retention(harness).run().studies_purged == 0  # done once


def test_a_dead_lettered_or_not_routed_study_is_finished_a_pending_delivery_is_not(
    harness: Harness, template: Dataset
) -> None:
    prepare(harness, template)
    harness.destination().reachable = False
    deliverer(harness).run_once()  # pending again: not finished
    harness.clock.advance(40 * 86400)
    assert retention(harness).run().studies_purged == 0
    harness.receive(make_image(template, generate_uid(), Modality="CT"))  # not routed: finished once complete
    harness.clock.advance(10)
    Completer(harness.engine, harness.settings, harness.clock).check()
    harness.clock.advance(40 * 86400)
    assert retention(harness).run().studies_purged == 1


def test_above_the_high_watermark_finished_work_goes_early_oldest_first(harness: Harness, template: Dataset) -> None:
    for _ in range(3):
        prepare(harness, template)
        deliverer(harness).run_once()
        harness.clock.advance(60)
    use = iter([95.0, 85.0, 79.0, 79.0, 79.0])  # high 90 starts it, low 80 ends it
    report = Retention(harness.engine, harness.settings, harness.clock, disk_use=lambda _: next(use)).run()
    assert report.watermark_purges == 2
    purged = harness.rows("SELECT study_pk FROM study_states WHERE purged_at IS NOT NULL ORDER BY study_pk")
    assert [row.study_pk for row in purged] == [1, 2]  # the oldest two
    assert retention(harness, disk_use=50).run().studies_purged == 0


def test_files_no_row_names_and_old_partial_files_are_swept(harness: Harness, template: Dataset) -> None:
    prepare(harness, template)
    spool, outbox = harness.settings.storage.spool_path, harness.settings.storage.outbox_path
    orphan = spool / "1.2.3" / "4.5.6" / "7.8.9.0123456789abcdef.dcm"  # renamed, never indexed
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x")
    stray = outbox / "1.2.3" / "abcdef0123456789" / "1.2.dcm"  # written, job never committed
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    partial = spool / ".incoming-node2" / "abc.partial"
    partial.parent.mkdir()
    partial.write_bytes(b"x")
    young = spool / ".incoming" / "young.partial"
    young.write_bytes(b"x")
    old = time.time() - 7200
    for path in (orphan, stray, partial):
        os.utime(path, (old, old))
    indexed_before = len(files(spool)) - 3
    assert retention(harness).sweep_unindexed() == 3
    assert not orphan.exists() and not stray.exists() and not partial.exists() and young.exists()
    assert not (spool / "1.2.3").exists()  # emptied folders go too
    assert len(files(spool)) - 1 == indexed_before and len(files(outbox)) == 3
