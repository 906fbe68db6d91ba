"""Orthanc with its DICOMweb plugin (Debian ``orthanc-dicomweb``) as a STOW-RS destination: the SR,
SEG and GSPS arrive (seen through Orthanc's REST API), with HTTP basic authentication against
Orthanc's RegisteredUsers, exactly once after a refused first attempt and a repeated send."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from gateway.config.pipeline import DicomwebDestination
from gateway.operations.actions import echo_destination
from gateway.pipeline.delivery import Deliverer
from gateway.pipeline.stow import StowSender
from tests.conftest import missing_prerequisite
from tests.gateway.pipeline.support import Harness
from tests.gateway.pipeline.test_worker import queue_study
from tests.orthanc_support import ADMIN_PASSWORD, OrthancProcess, config_for_test, start_orthanc
from tests.viewer_support import dicomweb_plugin, orthanc_dicomweb_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def orthanc(
    tmp_path: Path, dicom_tool: Callable[[str], Path], free_port: Callable[[], int]
) -> Iterator[OrthancProcess]:
    binary = dicom_tool("Orthanc")
    plugin = dicomweb_plugin()
    if plugin is None:
        missing_prerequisite(
            "Orthanc's DICOMweb plugin is not installed; install it with: apt-get install -y orthanc-dicomweb"
        )
        raise AssertionError("unreachable")  # pragma: no cover
    config = config_for_test(free_port(), free_port(), **orthanc_dicomweb_settings(plugin))
    server = start_orthanc(
        binary,
        tmp_path / "orthanc",
        config,
        {"ORTHANC_AET": "PACSTEST", "GAZEX_AET": "GAZEXTEST", "GAZEX_HOST": "127.0.0.1", "GAZEX_PORT": "104"},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def template(chest_cr_path: Path) -> Dataset:
    dataset = pydicom.dcmread(chest_cr_path)
    dataset.PixelData = dataset.pixel_array[:64, :64].copy().tobytes()
    dataset.Rows, dataset.Columns = 64, 64
    return dataset


def test_results_arrive_in_orthanc_by_stow_rs_exactly_once_after_a_retry(
    tmp_path: Path, orthanc: OrthancProcess, template: Dataset
) -> None:
    password = tmp_path / "orthanc-password"
    password.write_text("not-the-password\n", encoding="utf-8")
    destination = {
        "type": "dicomweb",
        "base_url": f"http://127.0.0.1:{orthanc.http_port}/dicom-web/",
        "authentication": {"type": "basic", "username": "admin", "password_file": str(password)},
        "max_instances_per_request": 2,
        "timeout_seconds": 30,
    }
    harness = Harness.create(tmp_path, destinations={"orthanc": destination})
    try:
        queue_study(harness, template)
        pipeline = harness.pipeline()
        pipeline.outbox.prepare()
        assert pipeline.workers[0].run_once() is not None
        outputs = harness.rows("SELECT sop_instance_uid, file_path FROM outputs ORDER BY id")
        uids = [row.sop_instance_uid for row in outputs]
        sender = StowSender()
        deliverer = Deliverer(
            harness.engine, harness.settings, pipeline.outbox, sender, harness.clock, "d", lambda: 0.0
        )

        # a wrong password: Orthanc answers 401, nothing is stored, the delivery waits for its retry
        check = echo_destination(harness.settings, "orthanc")
        assert not check.ok and check.status == 401 and "credentials were refused" in check.message
        result = deliverer.run_once()
        assert result is not None and result.status == "pending" and result.acknowledged == 0
        assert "HTTP 401: the STOW-RS service refused our credentials" in (result.reason or "")
        assert orthanc.get("/instances") == []

        # the password is fixed (read at every attempt): the retry delivers all three
        password.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
        assert echo_destination(harness.settings, "orthanc").ok
        harness.clock.advance(10)
        result = deliverer.run_once()
        assert result is not None and (result.status, result.acknowledged, result.total) == ("delivered", 3, 3)
        stored = _stored(orthanc)
        assert sorted(stored) == sorted(uids)
        assert {ds.Modality for ds in stored.values()} == {"SR", "SEG", "PR"}
        for row in outputs:  # the outbox file's content, unchanged
            sent = pydicom.dcmread(pipeline.outbox.path(row.file_path))
            assert stored[row.sop_instance_uid].SOPClassUID == sent.SOPClassUID
            assert stored[row.sop_instance_uid].StudyInstanceUID == sent.StudyInstanceUID

        # sent again (as after a response lost on the way back): Orthanc acknowledges, and keeps one copy each
        web = harness.settings.destinations["orthanc"]
        assert isinstance(web, DicomwebDestination)
        with sender.open("orthanc", web, "GAZEX", []) as session:
            again = session.send_batch([(row.sop_instance_uid, pipeline.outbox.path(row.file_path)) for row in outputs])  # type: ignore[attr-defined]
        assert [result.status for result in again] == [0x0000] * 3
        assert sorted(_stored(orthanc)) == sorted(uids)
        assert deliverer.run_once() is None  # nothing left to send
    finally:
        harness.close()


def _stored(orthanc: OrthancProcess) -> dict[str, Dataset]:
    """The instances Orthanc holds, by SOP Instance UID."""
    found: dict[str, Dataset] = {}
    for instance in orthanc.get("/instances"):
        dataset = pydicom.dcmread(io.BytesIO(orthanc.raw(f"/instances/{instance}/file")))
        found[str(dataset.SOPInstanceUID)] = dataset
    return found
