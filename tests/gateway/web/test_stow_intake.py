"""The STOW-RS intake on the real app, with a real runtime (spool, SQLite index, observers) and real accounts.

Every refusal is checked for what it leaves behind: the spool's files and the index are as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from gateway.config import Settings
from gateway.dicom.store import StoreStatus
from gateway.events import AssociationInfo, GatewayObserver, Observers, ReceivedInstance
from gateway.runtime import GatewayRuntime
from gateway.web import ApiContext, create_app, stow_intake
from tests.gateway.web.stow_support import BOUNDARY, CONTENT_TYPE, dataset_bytes_of, multipart, part10
from tests.ingest_support import dataset_bytes, node_settings, small_cr, stored_instances, write_dataset

PASSWORD = "a long test password"  # noqa: S105 - a test account's password
FAILED = "00081198"
REFERENCED = "00081199"


class Recorder(GatewayObserver):
    def __init__(self) -> None:
        self.stored: list[tuple[AssociationInfo | None, ReceivedInstance]] = []
        self.refused: list[int] = []
        self.ended: list[tuple[AssociationInfo, int]] = []

    def instance_stored(self, association: AssociationInfo | None, instance: ReceivedInstance) -> None:
        self.stored.append((association, instance))

    def instance_refused(self, association: AssociationInfo | None, status: int) -> None:
        self.refused.append(status)

    def association_ended(self, association: AssociationInfo, received: Sequence[ReceivedInstance]) -> None:
        self.ended.append((association, len(received)))


@dataclass
class Intake:
    settings: Settings
    client: TestClient
    recorder: Recorder
    tokens: dict[str, str] = field(default_factory=dict)

    def post(
        self, body: bytes, *, user: str = "modality", path: str = "/dicomweb/studies", content_type: str = CONTENT_TYPE
    ) -> Any:
        headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
        if user:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return self.client.post(path, content=body, headers=headers)

    def spool_files(self) -> list[Path]:
        """Every file under the spool, the incoming folder included."""
        root = self.settings.storage.spool_path
        return sorted(path for path in root.rglob("*") if path.is_file() and not path.name.startswith(".lock"))


@contextlib.contextmanager
def make_intake(tmp_path: Path, **sections: dict[str, Any]) -> Iterator[Intake]:
    values: dict[str, Any] = {
        "dicomweb": {"enabled": True, "callers": {"modality": "STOWSCU"}},
        "http": {"max_upload_bytes": "1MB"},
    }
    for name, overrides in sections.items():
        values[name] = {**values.get(name, {}), **overrides}
    settings = node_settings(tmp_path / "data", 11112, **values)
    recorder = Recorder()
    runtime = GatewayRuntime(settings, pipeline=False, observers=Observers([recorder]))
    runtime.open()
    try:
        assert runtime.engine is not None
        context = ApiContext(settings=settings, engine=runtime.engine, observer=runtime.observers, runtime=runtime)
        intake = Intake(settings, TestClient(create_app(context), base_url="http://127.0.0.1"), recorder)
        for user, role in (("modality", "viewer"), ("visitor", "admin")):
            context.accounts.add_user(user, role, PASSWORD)
            intake.tokens[user] = context.accounts.create_token(user, "tests")[0]
        with intake.client:
            yield intake
    finally:
        runtime.close()


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    with make_intake(tmp_path) as intake:
        yield intake


def failures(response: Any) -> list[tuple[str, int]]:
    """(SOP Instance UID, Failure Reason) of each item of the response's Failed SOP Sequence."""
    items = response.json().get(FAILED, {}).get("Value", [])
    return [(item["00081155"].get("Value", [""])[0], item["00081197"]["Value"][0]) for item in items]


def referenced(response: Any) -> list[str]:
    items = response.json().get(REFERENCED, {}).get("Value", [])
    return [item["00081155"]["Value"][0] for item in items]


def test_instances_are_stored_indexed_and_reported_like_c_store_ones(
    intake: Intake, chest_cr: Dataset, tmp_path: Path
) -> None:
    first = small_cr(chest_cr)
    second = small_cr(chest_cr)
    response = intake.post(multipart([part10(first), part10(second)]))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    assert referenced(response) == [first.SOPInstanceUID, second.SOPInstanceUID]
    assert FAILED not in response.json()
    rows = stored_instances(intake.settings)
    assert set(rows) == {first.SOPInstanceUID, second.SOPInstanceUID}
    row = rows[first.SOPInstanceUID]
    # the same bytes and hash as a C-STORE of the same file would store
    expected = dataset_bytes(write_dataset(first, tmp_path / "first.dcm"))
    assert row.content_sha256 == hashlib.sha256(expected).hexdigest()
    stored = intake.settings.storage.spool_path / row.file_path
    assert stored.read_bytes().endswith(expected)
    assert row.calling_ae_title == "STOWSCU" and row.called_ae_title == "GAZEX"
    assert [instance.sop_instance_uid for _, instance in intake.recorder.stored] == [
        first.SOPInstanceUID,
        second.SOPInstanceUID,
    ]
    [(association, received)] = intake.recorder.ended
    assert (association.calling_ae_title, association.called_ae_title, received) == ("STOWSCU", "GAZEX", 2)
    assert not list((intake.settings.storage.spool_path / ".incoming").iterdir())


def test_an_identical_copy_sent_again_is_acknowledged_and_changes_nothing(intake: Intake, chest_cr: Dataset) -> None:
    instance = small_cr(chest_cr)
    assert intake.post(multipart([part10(instance)])).status_code == 200
    files = intake.spool_files()
    again = intake.post(multipart([part10(instance)]))
    assert again.status_code == 200 and referenced(again) == [instance.SOPInstanceUID]
    assert intake.spool_files() == files


@pytest.mark.parametrize(
    ("content_type", "status", "detail"),
    [
        ("application/dicom", 415, "multipart/related"),
        ("application/json", 415, "multipart/related"),
        (f'multipart/related; type="application/dicom+json"; boundary="{BOUNDARY}"', 415, "application/dicom+json"),
        ('multipart/related; type="application/dicom"', 400, "no boundary"),
        (f'multipart/form-data; boundary="{BOUNDARY}"', 415, "multipart/form-data"),
    ],
)
def test_a_wrong_content_type_is_refused_before_the_body_is_read(
    intake: Intake, chest_cr: Dataset, content_type: str, status: int, detail: str
) -> None:
    response = intake.post(multipart([part10(small_cr(chest_cr))]), content_type=content_type)
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert intake.spool_files() == [] and stored_instances(intake.settings) == {}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"this is not a multipart message", "not a multipart/related message"),
        (b"", "ends before its closing boundary"),
    ],
)
def test_a_body_that_is_not_multipart_is_a_bad_request(intake: Intake, body: bytes, detail: str) -> None:
    response = intake.post(body)
    assert response.status_code == 400 and detail in response.json()["detail"]
    assert intake.spool_files() == [] and stored_instances(intake.settings) == {}


def test_a_truncated_body_stores_nothing_not_even_its_complete_parts(intake: Intake, chest_cr: Dataset) -> None:
    kept = small_cr(chest_cr)
    assert intake.post(multipart([part10(kept)])).status_code == 200
    before = intake.spool_files()
    complete, cut = small_cr(chest_cr), part10(small_cr(chest_cr))
    body = multipart([part10(complete), cut], closed=False)[: -len(cut) // 2]
    response = intake.post(body)
    assert response.status_code == 400
    assert "in part 2 before its closing boundary (truncated)" in response.json()["detail"]
    assert intake.spool_files() == before  # no partial file left, the earlier instance untouched
    assert set(stored_instances(intake.settings)) == {kept.SOPInstanceUID}


def test_an_oversized_request_is_refused_with_413_and_stores_nothing(tmp_path: Path, chest_cr: Dataset) -> None:
    with make_intake(tmp_path, http={"max_upload_bytes": "100KB"}) as intake:
        big = part10(small_cr(chest_cr, rows=256, columns=256))  # ~130 kB of pixels
        declared = intake.post(multipart([big]))
        assert declared.status_code == 413 and "http.max_upload_bytes" in declared.json()["detail"]

        body = multipart([part10(small_cr(chest_cr)), big])

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is met while streaming
            for start in range(0, len(body), 16384):
                yield body[start : start + 16384]

        streamed = intake.client.post(
            "/dicomweb/studies",
            content=chunks(),
            headers={"Content-Type": CONTENT_TYPE, "Authorization": f"Bearer {intake.tokens['modality']}"},
        )
        assert streamed.status_code == 413
        assert intake.spool_files() == [] and stored_instances(intake.settings) == {}
        assert intake.recorder.stored == [] and intake.recorder.ended == []


def test_unknown_tokens_and_users_not_listed_as_callers_are_refused(intake: Intake, chest_cr: Dataset) -> None:
    body = multipart([part10(small_cr(chest_cr))])
    intake.tokens["forged"] = "gzx_" + "x" * 43
    assert intake.post(body, user="forged").status_code == 401
    assert intake.post(body, user="").status_code == 401
    refused = intake.post(body, user="visitor")  # an admin, but not in dicomweb.callers
    assert refused.status_code == 403 and "dicomweb.callers" in refused.json()["detail"]
    assert intake.spool_files() == [] and stored_instances(intake.settings) == {}


def test_the_intake_is_off_unless_enabled(tmp_path: Path, chest_cr: Dataset) -> None:
    with make_intake(tmp_path, dicomweb={"enabled": False}) as intake:
        response = intake.post(multipart([part10(small_cr(chest_cr))]))
        assert response.status_code == 404 and "dicomweb.enabled" in response.json()["detail"]


def test_a_study_resource_refuses_instances_of_another_study(intake: Intake, chest_cr: Dataset) -> None:
    ours = small_cr(chest_cr)
    other = small_cr(chest_cr, StudyInstanceUID=generate_uid())
    response = intake.post(multipart([part10(ours), part10(other)]), path=f"/dicomweb/studies/{ours.StudyInstanceUID}")
    assert response.status_code == 202
    assert referenced(response) == [ours.SOPInstanceUID]
    assert failures(response) == [(other.SOPInstanceUID, 0xA900)]
    assert set(stored_instances(intake.settings)) == {ours.SOPInstanceUID}
    only_other = intake.post(multipart([part10(other)]), path=f"/dicomweb/studies/{ours.StudyInstanceUID}")
    assert only_other.status_code == 409 and failures(only_other) == [(other.SOPInstanceUID, 0xA900)]
    assert intake.post(multipart([part10(ours)]), path="/dicomweb/studies/not-a-uid").status_code == 400


def test_a_part_that_is_not_dicom_fails_alone(intake: Intake, chest_cr: Dataset) -> None:
    good = small_cr(chest_cr)
    response = intake.post(multipart([b"%PDF-1.7 not a DICOM file" * 10, part10(good)]))
    assert response.status_code == 202
    assert failures(response) == [("", StoreStatus.CANNOT_UNDERSTAND)]
    assert referenced(response) == [good.SOPInstanceUID]
    assert intake.recorder.refused == [StoreStatus.CANNOT_UNDERSTAND]
    assert intake.recorder.ended[0][1] == 1
    wrong_type = intake.post(multipart([part10(small_cr(chest_cr))], part_type="application/octet-stream"))
    assert wrong_type.status_code == 409 and failures(wrong_type)[0][1] == StoreStatus.CANNOT_UNDERSTAND


def test_a_data_set_that_does_not_parse_gets_0xc210(intake: Intake, chest_cr: Dataset) -> None:
    instance = small_cr(chest_cr)
    data = part10(instance)
    meta_end = len(data) - len(dataset_bytes_of(data))
    broken = data[:meta_end] + b"\x08\x00\x16\x00UI\xff\xff" + b"garbage"  # an element longer than the file
    response = intake.post(multipart([broken]))
    assert response.status_code == 409
    assert failures(response) == [(instance.SOPInstanceUID, StoreStatus.CANNOT_UNDERSTAND)]
    assert intake.spool_files() == [] and stored_instances(intake.settings) == {}


def test_sop_classes_and_transfer_syntaxes_not_accepted_are_refused(tmp_path: Path, chest_cr: Dataset) -> None:
    sections = {
        "dicom": {"sop_classes": ["ComputedRadiographyImageStorage"], "transfer_syntaxes": ["ExplicitVRLittleEndian"]}
    }
    with make_intake(tmp_path, **sections) as intake:
        secondary = small_cr(chest_cr)
        secondary.SOPClassUID = secondary.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        implicit = small_cr(chest_cr)
        implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        response = intake.post(multipart([part10(secondary), part10(implicit)]))
        assert response.status_code == 409
        assert failures(response) == [
            (secondary.SOPInstanceUID, StoreStatus.SOP_CLASS_NOT_SUPPORTED),
            (implicit.SOPInstanceUID, StoreStatus.TRANSFER_SYNTAX_NOT_SUPPORTED),
        ]
        assert intake.spool_files() == [] and stored_instances(intake.settings) == {}


def test_below_the_free_disk_reserve_every_instance_gets_0xa700(tmp_path: Path, chest_cr: Dataset) -> None:
    with make_intake(tmp_path, storage={"min_free_disk": "1PB"}) as intake:
        instance = small_cr(chest_cr)
        response = intake.post(multipart([part10(instance)]))
        assert response.status_code == 409
        assert failures(response) == [(instance.SOPInstanceUID, StoreStatus.OUT_OF_RESOURCES)]
        assert intake.recorder.refused == [StoreStatus.OUT_OF_RESOURCES]
        assert intake.spool_files() == [] and stored_instances(intake.settings) == {}


def streamed(intake: Intake, body: bytes, piece: int = 65536) -> Any:
    """POST ``body`` in pieces without a Content-Length, as a client streaming a large upload does."""

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), piece):
            yield body[start : start + piece]

    return intake.client.post(
        "/dicomweb/studies",
        content=pieces(),
        headers={"Content-Type": CONTENT_TYPE, "Authorization": f"Bearer {intake.tokens['modality']}"},
    )


def test_a_body_of_several_mib_is_parsed_while_it_arrives_and_a_bad_part_fails_alone(
    tmp_path: Path, chest_cr: Dataset
) -> None:
    # ~2.6 MB: blocks are parsed in a worker thread while the next one arrives (FEED_BYTES), in order
    with make_intake(tmp_path, http={"max_upload_bytes": "8MB"}) as intake:
        instances = [small_cr(chest_cr, rows=512, columns=512) for _ in range(5)]
        files = [part10(instance) for instance in instances]
        files[2] = b"not a DICOM file " * 30000  # 510 kB that straddles a block boundary
        response = streamed(intake, multipart(files))
        assert response.status_code == 202, response.text
        good = [instances[i].SOPInstanceUID for i in (0, 1, 3, 4)]
        assert referenced(response) == good
        assert failures(response) == [("", StoreStatus.CANNOT_UNDERSTAND)]
        rows = stored_instances(intake.settings)
        assert set(rows) == set(good)
        for i in (0, 1, 3, 4):
            row = rows[instances[i].SOPInstanceUID]
            stored = (intake.settings.storage.spool_path / row.file_path).read_bytes()
            assert stored.endswith(dataset_bytes_of(files[i]))
            assert row.content_sha256 == hashlib.sha256(dataset_bytes_of(files[i])).hexdigest()
        assert [instance.sop_instance_uid for _, instance in intake.recorder.stored] == good
        assert intake.recorder.refused == [StoreStatus.CANNOT_UNDERSTAND]
        assert not list((intake.settings.storage.spool_path / ".incoming").iterdir())


def test_a_large_body_refused_midway_leaves_no_spool_file(tmp_path: Path, chest_cr: Dataset) -> None:
    with make_intake(tmp_path, http={"max_upload_bytes": "3MB"}) as intake:
        files = [part10(small_cr(chest_cr, rows=512, columns=512)) for _ in range(8)]  # ~4.2 MB
        too_large = streamed(intake, multipart(files))  # refused while a block is being parsed
        assert too_large.status_code == 413
        assert intake.spool_files() == [] and stored_instances(intake.settings) == {}
        # malformed after its first MiB: a part header that is not "name: value"
        malformed = multipart(files[:3], closed=False) + f"--{BOUNDARY}\r\nBad header\r\n\r\n".encode() + files[3]
        response = streamed(intake, malformed)
        assert response.status_code == 400 and "not a multipart/related message" in response.json()["detail"]
        assert intake.spool_files() == [] and stored_instances(intake.settings) == {}
        assert intake.recorder.stored == [] and intake.recorder.ended == []


def test_a_request_cancelled_while_its_parts_commit_keeps_them_whole(
    intake: Intake, chest_cr: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # e.g. the server shutting down with the request in flight: the commit goes on in its worker
    # thread, so the spool files it commits must not be deleted under it
    committing, release = threading.Event(), threading.Event()
    store_parts = stow_intake._store_parts

    def held(*args: Any) -> Any:
        committing.set()
        release.wait(60)
        return store_parts(*args)

    monkeypatch.setattr(stow_intake, "_store_parts", held)
    instance = small_cr(chest_cr)
    body = multipart([part10(instance)])
    headers = {"Content-Type": CONTENT_TYPE, "Authorization": f"Bearer {intake.tokens['modality']}"}

    async def cancel_while_committing() -> None:
        transport = httpx.ASGITransport(app=intake.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            request = asyncio.ensure_future(client.post("/dicomweb/studies", content=body, headers=headers))
            while not committing.is_set():
                await asyncio.sleep(0.01)
            request.cancel()  # the request's clean-up runs at once; the commit is let go on a little later
            asyncio.get_running_loop().call_later(0.2, release.set)
            with pytest.raises(asyncio.CancelledError):
                await request

    asyncio.run(cancel_while_committing())
    row = stored_instances(intake.settings)[instance.SOPInstanceUID]
    stored = (intake.settings.storage.spool_path / row.file_path).read_bytes()
    assert stored.endswith(dataset_bytes_of(part10(instance)))
    assert [received.sop_instance_uid for _, received in intake.recorder.stored] == [instance.SOPInstanceUID]
    assert not list((intake.settings.storage.spool_path / ".incoming").iterdir())
