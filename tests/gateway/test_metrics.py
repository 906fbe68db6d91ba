"""The Prometheus metrics after a known run: counters from the events, gauges from the database and disk."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from gateway import __version__
from gateway.db import create_database_engine
from gateway.events import AssociationInfo
from gateway.metrics import GatewayMetrics, render
from gateway.pipeline.clock import FakeClock
from gateway.pipeline.completer import Completer
from gateway.pipeline.model import ModelHolder
from gateway.pipeline.sender import FakeSender
from gateway.runtime import GatewayRuntime
from inference import FakeEngine
from tests.gateway.pipeline.support import Harness, make_image
from tests.gateway.recording import Recorder
from tests.ingest_support import index_rows, node_settings, scu, small_cr

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: GatewayMetrics) -> Samples:
    body, content_type = render(metrics)
    assert content_type.startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_the_counts_of_a_known_run(tmp_path: Path, free_port: Callable[[], int], chest_cr: Dataset) -> None:
    settings = node_settings(
        tmp_path / "data",
        free_port(),
        dicom={"allowed_callers": [{"ae_title": "PACS", "host": "127.0.0.1"}]},
        model={"path": "fake"},
        destinations={"archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 104}},
    )
    clock = FakeClock(datetime.now(UTC))
    sender = FakeSender()
    model = ModelHolder(settings.model, loader=lambda _: FakeEngine())
    recorder = Recorder()
    runtime = GatewayRuntime(settings, clock=clock, sender=sender, model=model)
    runtime.observers.add(recorder)
    runtime.open()
    assert runtime.node is not None and runtime.pipeline is not None and runtime.metrics is not None
    try:
        runtime.node.start()
        study = generate_uid()
        images = [small_cr(chest_cr, StudyInstanceUID=study) for _ in range(3)]
        unfiled = small_cr(chest_cr)
        del unfiled.StudyInstanceUID
        scu("INTRUDER").associate(*runtime.node.address, ae_title="GAZEX")
        assoc = scu("PACS").associate(*runtime.node.address, ae_title="GAZEX")
        assert [assoc.send_c_store(dataset).Status for dataset in [*images, unfiled]] == [0, 0, 0, 0xC212]
        assoc.release()
        recorder.wait_for("association_ended")
        recorder.wait_for("association_rejected")
        before = scrape(runtime.metrics)
        assert value(before, "gazex_model_loaded") == 0
        assert value(before, "gazex_queue_depth", queue="jobs") == 0
        clock.advance(3600)
        assert runtime.pipeline.run_burst(complete=True) == (1, 1)
        samples = scrape(runtime.metrics)
    finally:
        runtime.stop(grace=0)
        runtime.close()

    spool_bytes = sum(row.file_size for row in index_rows(settings.database_url, "SELECT file_size FROM instances"))
    outbox_bytes = sum(row.file_size for row in index_rows(settings.database_url, "SELECT file_size FROM outputs"))
    assert value(samples, "gazex_associations_total", outcome="accepted", reason="none") == 1
    assert value(samples, "gazex_associations_total", outcome="rejected", reason="unknown_caller") == 1
    for reason in ("called_ae_title", "capacity", "shutting_down", "admission_error", "pre_admission"):
        assert value(samples, "gazex_associations_total", outcome="rejected", reason=reason) == 0
    assert value(samples, "gazex_instances_received_total") == 3
    assert value(samples, "gazex_received_bytes_total") == spool_bytes > 0
    assert value(samples, "gazex_store_failures_total", status="0xC212") == 1
    assert value(samples, "gazex_studies_completed_total") == 1
    assert value(samples, "gazex_jobs_total", outcome="done") == 1
    assert value(samples, "gazex_jobs_total", outcome="failed") == 0
    assert value(samples, "gazex_analysis_duration_seconds_count") == 1
    assert value(samples, "gazex_analysis_duration_seconds_bucket", le="+Inf") == 1
    assert value(samples, "gazex_deliveries_total", outcome="delivered") == 1
    assert value(samples, "gazex_deliveries_total", outcome="retry") == 0
    assert value(samples, "gazex_delivery_retries_total") == 0
    assert value(samples, "gazex_jobs_by_state", state="done") == 1
    assert value(samples, "gazex_jobs_by_state", state="queued") == 0
    assert value(samples, "gazex_deliveries_by_state", state="delivered") == 1
    assert value(samples, "gazex_queue_depth", queue="jobs") == 0
    assert value(samples, "gazex_queue_depth", queue="deliveries") == 0
    assert value(samples, "gazex_queue_oldest_age_seconds", queue="jobs") == 0
    assert value(samples, "gazex_stored_bytes", volume="spool") == spool_bytes
    assert value(samples, "gazex_stored_bytes", volume="outbox") == outbox_bytes > 0
    assert value(samples, "gazex_disk_free_bytes", volume="spool") > 0
    assert value(samples, "gazex_disk_free_bytes", volume="outbox") > 0
    assert value(samples, "gazex_model_loaded") == 1
    assert value(samples, "gazex_database_up") == 1
    assert value(samples, "gazex_build_info", version=__version__) == 1
    assert not [name for name, _ in samples if not name.startswith("gazex_")]


def test_the_queue_is_read_from_the_database_at_each_scrape(tmp_path: Path, chest_cr: Dataset) -> None:
    """Jobs queued by any process count: nothing here passed through this metrics object's events."""
    harness = Harness.create(tmp_path)
    try:
        queue_and_scrape(harness, small_cr(chest_cr))
    finally:
        harness.close()


def queue_and_scrape(harness: Harness, template: Dataset) -> None:
    harness.receive(make_image(template, generate_uid()))
    harness.clock.advance(10)
    Completer(harness.engine, harness.settings, harness.clock).check()
    metrics = GatewayMetrics(engine=harness.engine, now=harness.clock.now)
    harness.clock.advance(30)
    samples = scrape(metrics)
    assert value(samples, "gazex_queue_depth", queue="jobs") == 1
    assert value(samples, "gazex_queue_oldest_age_seconds", queue="jobs") == 30
    assert value(samples, "gazex_jobs_by_state", state="queued") == 1
    assert value(samples, "gazex_studies_completed_total") == 0  # not seen by this process
    harness.clock.advance(15)
    assert value(scrape(metrics), "gazex_queue_oldest_age_seconds", queue="jobs") == 45


def test_a_database_that_does_not_answer_is_a_gauge_not_a_failed_scrape(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'missing' / 'gazex.db'}")
    try:
        samples = scrape(GatewayMetrics(engine=engine, spool_path=tmp_path / "spool"))
    finally:
        engine.dispose()
    assert value(samples, "gazex_database_up") == 0
    assert ("gazex_queue_depth", frozenset({("queue", "jobs")})) not in samples
    assert value(samples, "gazex_disk_free_bytes", volume="spool") > 0  # the nearest existing parent's


def test_rejection_reasons_outside_the_label_set_are_not_new_labels() -> None:
    metrics = GatewayMetrics()

    metrics.association_rejected(AssociationInfo("A", "B", "127.0.0.1"), "something new", "detail")
    metrics.instance_refused(None, 0xA700)
    samples = scrape(metrics)
    assert value(samples, "gazex_associations_total", outcome="rejected", reason="admission_error") == 1
    assert value(samples, "gazex_store_failures_total", status="0xA700") == 1
    assert not [labels for name, labels in samples if ("reason", "something new") in labels]
