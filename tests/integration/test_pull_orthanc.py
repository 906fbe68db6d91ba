"""Pulling from a real PACS: Orthanc as a C-FIND/C-MOVE, C-GET and QIDO-RS/WADO-RS source.

Orthanc holds chest CR and DX studies and a hand study on dates inside a week, and a chest
study from the month before.  A backfill of that week's chest CR/DX studies (over the HTTP
API of a running ``gazex serve``) retrieves only the two chest studies by C-MOVE; they are
analysed (FakeEngine) and the results arrive back in Orthanc.  C-GET and DICOMweb pulls run in
the ``gazex pull --here`` process; a C-MOVE to an AE title Orthanc does not know is refused,
retried and fails with the reason; a pull stopped half-way (``max_studies_per_hour: 1``) goes
on where it was when ``gazex serve`` starts again.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from lxml import etree
from pydicom.uid import UID, generate_uid
from pynetdicom.dsutils import decode

from benchmarks._net import wait_for_port
from gateway.accounts import Accounts
from gateway.db import create_database_engine
from tests.conftest import missing_prerequisite
from tests.gateway.audit.support import FIND, assert_valid
from tests.ingest_support import index_rows, run_gazex, small_cr, start_serve, write_config
from tests.orthanc_support import (
    GATEWAY_AET,
    ORTHANC_AET,
    OrthancProcess,
    config_for_test,
    gateway_beside_orthanc,
    start_orthanc,
    wait_until,
)
from tests.viewer_support import dicomweb_plugin, orthanc_dicomweb_settings

pytestmark = pytest.mark.integration

PASSWORD = "a long test password"  # noqa: S105 - a test account's
WEEK = ("20250101", "20250107")
RESULT_MODALITIES = {"SR", "SEG", "PR"}


@dataclass(frozen=True)
class Archive:
    """What Orthanc holds: Study Instance UID by name."""

    studies: dict[str, str]

    @property
    def wanted(self) -> set[str]:
        return {self.studies["chest_cr"], self.studies["chest_dx"]}


def _pacs(
    orthanc_binary: Path,
    workdir: Path,
    http_port: int,
    dicom_port: int,
    gateway_port: int,
    *,
    extra: dict[str, Any] | None = None,
) -> OrthancProcess:
    """Orthanc without the routing script (nothing is pushed), knowing the gateway as ``gazex``."""
    modality = {
        "AET": GATEWAY_AET,
        "Host": "127.0.0.1",
        "Port": gateway_port,
        "AllowEcho": True,
        "AllowFind": True,
        "AllowMove": True,
        "AllowGet": True,
        "AllowStore": True,
    }
    config = config_for_test(http_port, dicom_port, LuaScripts=[], DicomModalities={"gazex": modality}, **(extra or {}))
    return start_orthanc(orthanc_binary, workdir, config, {"ORTHANC_AET": ORTHANC_AET})


def _load(orthanc: OrthancProcess, chest: pydicom.Dataset) -> Archive:
    """Four one-image studies, uploaded over Orthanc's REST API."""
    variants: dict[str, dict[str, Any]] = {
        "chest_cr": {"Modality": "CR", "BodyPartExamined": "CHEST", "StudyDate": "20250103"},
        "chest_dx": {"Modality": "DX", "BodyPartExamined": "CHEST", "StudyDate": "20250105"},
        "hand_cr": {"Modality": "CR", "BodyPartExamined": "HAND", "StudyDate": "20250104"},
        "old_chest": {"Modality": "CR", "BodyPartExamined": "CHEST", "StudyDate": "20241215"},
    }
    studies = {}
    for name, changes in variants.items():
        dataset = small_cr(
            chest, StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(), ViewPosition="PA", **changes
        )
        path = Path(orthanc.log_path.parent / f"{name}.dcm")
        dataset.save_as(path, enforce_file_format=True)
        orthanc._request("POST", "/instances", path.read_bytes())
        studies[name] = str(dataset.StudyInstanceUID)
    return Archive(studies)


def _received(database: str) -> dict[str, str]:
    """Study Instance UID -> the calling AE title its instances came from, as the gateway indexed them."""
    rows = index_rows(
        database,
        "SELECT t.study_instance_uid, i.calling_ae_title FROM instances i JOIN series s ON i.series_pk = s.id "
        "JOIN studies t ON s.study_pk = t.id",
    )
    return {row[0]: row[1] for row in rows}


def _result_modalities(orthanc: OrthancProcess, study_uid: str) -> set[str]:
    study = orthanc.study_id(study_uid)
    return {series["MainDicomTags"]["Modality"] for series in orthanc.get(f"/studies/{study}/series")}


def _query_of(message: etree._Element) -> tuple[str, pydicom.Dataset | str]:
    """A Query audit message's outcome and query: the C-FIND identifier (decoded) or the QIDO-RS URL."""
    asked = message.find("ParticipantObjectIdentification")
    outcome = message.find("EventIdentification").get("EventOutcomeIndicator")
    query = base64.b64decode(asked.findtext("ParticipantObjectQuery"))
    if asked.get("ParticipantObjectID") != FIND:
        return outcome, query.decode()
    syntax = UID(base64.b64decode(asked.find("ParticipantObjectDetail[@type='TransferSyntax']").get("value")).decode())
    return outcome, decode(io.BytesIO(query), syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)


def _source(orthanc: OrthancProcess, **changes: Any) -> dict[str, Any]:
    return {"type": "dicom", "ae_title": ORTHANC_AET, "host": "127.0.0.1", "port": orthanc.dicom_port, **changes}


@pytest.fixture
def orthanc_binary(dicom_tool: Callable[[str], Path]) -> Path:
    return dicom_tool("Orthanc")


@pytest.fixture
def chest(chest_cr_path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(chest_cr_path)


@pytest.fixture
def stop_after() -> Iterator[list[Any]]:
    """Processes to stop at the end, whatever happens."""
    running: list[Any] = []
    yield running
    for process in reversed(running):
        if isinstance(process, OrthancProcess):
            process.stop()
        else:
            process.kill()


def test_a_backfill_pulls_only_the_weeks_chest_studies_and_the_results_arrive_in_the_pacs(
    tmp_path: Path, free_port: Callable[[], int], orthanc_binary: Path, chest: pydicom.Dataset, stop_after: list[Any]
) -> None:
    gateway_port, http_port, orthanc_http, orthanc_dicom = free_port(), free_port(), free_port(), free_port()
    orthanc = _pacs(orthanc_binary, tmp_path / "orthanc", orthanc_http, orthanc_dicom, gateway_port)
    stop_after.append(orthanc)
    archive = _load(orthanc, chest)
    settings = gateway_beside_orthanc(
        tmp_path / "gazex",
        gateway_port,
        orthanc_dicom,
        sources={"pacs": _source(orthanc, retrieve="move")},
        pull={"poll_seconds": 0.2, "base_delay_seconds": 1},
        http={"enabled": True, "port": http_port},
    )
    config = write_config(tmp_path / "gazex.yaml", settings)
    database = f"sqlite:///{tmp_path / 'gazex' / 'gazex.db'}"
    serve = start_serve(config, gateway_port, tmp_path / "serve.log")
    stop_after.append(serve)
    wait_for_port(http_port, serve.process)
    engine = create_database_engine(database, create_directory=False)
    Accounts(engine).add_user("olga", "operator", PASSWORD)
    token, _ = Accounts(engine).create_token("olga", "backfill")
    engine.dispose()

    with httpx.Client(
        base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as api:
        body = {"source": "pacs", "modalities": ["CR", "DX"], "body_part": "CHEST", "date_from": WEEK[0],
                "date_to": WEEK[1]}  # fmt: skip
        answer = api.post("/api/v1/pulls", json=body)
        assert answer.status_code == 202, answer.text
        pull_id = answer.json()["id"]
        assert answer.json()["state"] == "queued" and answer.json()["created_by"] == "olga"

        def finished() -> dict[str, Any] | None:
            found: dict[str, Any] = api.get(f"/api/v1/pulls/{pull_id}").json()
            return found if found["state"] in ("done", "failed") else None

        pull = wait_until(finished, 120, "the pull to finish")
        assert pull["state"] == "done", pull
        assert (pull["found"], pull["retrieved"], pull["failed"], pull["instances"]) == (2, 2, 0, 2)
        assert {item["study_instance_uid"] for item in pull["items"]} == archive.wanted
        listed = api.get("/api/v1/pulls").json()
        assert [p["id"] for p in listed] == [pull_id]
        assert api.post("/api/v1/pulls", json={"source": "nope", "study_uid": "1.2"}).status_code == 422

    # only the week's chest studies came, through our Storage SCP, from Orthanc's AE
    assert _received(database) == dict.fromkeys(archive.wanted, ORTHANC_AET)
    # ... were analysed, and the SR, SEG and GSPS arrived back in the same studies in Orthanc
    for study_uid in archive.wanted:

        def results(uid: str = study_uid) -> bool:
            return _result_modalities(orthanc, uid) >= RESULT_MODALITIES

        wait_until(results, 120, f"the results of {study_uid} in Orthanc")
    for name in ("hand_cr", "old_chest"):
        assert _result_modalities(orthanc, archive.studies[name]) == {"CR"}

    status = run_gazex("pull", "status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert "modality CR,DX, body part CHEST, dates 20250101-20250107" in status.stdout and "done" in status.stdout
    assert serve.terminate() == 0


def test_c_get_and_dicomweb_pulls_store_through_the_gateways_store(
    tmp_path: Path, free_port: Callable[[], int], orthanc_binary: Path, chest: pydicom.Dataset, stop_after: list[Any]
) -> None:
    plugin = dicomweb_plugin()
    if plugin is None:
        missing_prerequisite("Orthanc's DICOMweb plugin is not installed: apt-get install -y orthanc-dicomweb")
    assert plugin is not None
    gateway_port, orthanc_http, orthanc_dicom = free_port(), free_port(), free_port()
    orthanc = _pacs(
        orthanc_binary,
        tmp_path / "orthanc",
        orthanc_http,
        orthanc_dicom,
        gateway_port,
        extra=orthanc_dicomweb_settings(plugin),
    )
    stop_after.append(orthanc)
    archive = _load(orthanc, chest)
    password = tmp_path / "orthanc-password"
    password.write_text("test-password\n", encoding="utf-8")
    sources = {
        "pacs": _source(orthanc, retrieve="get"),
        "web": {
            "type": "dicomweb",
            "base_url": f"http://127.0.0.1:{orthanc_http}/dicom-web",
            "auth": {"type": "basic", "username": "admin", "password_file": str(password)},
            "caller_name": "PACSWEB",
        },
    }
    settings = gateway_beside_orthanc(tmp_path / "gazex", gateway_port, orthanc_dicom, sources=sources)
    config = write_config(tmp_path / "gazex.yaml", settings)
    database = f"sqlite:///{tmp_path / 'gazex' / 'gazex.db'}"
    assert run_gazex("db", "upgrade", "--config", str(config)).returncode == 0

    # C-GET of one study, by its UID: the instances come back on our association
    got = run_gazex("pull", "pacs", "--study-uid", archive.studies["chest_cr"], "--here", "--config", str(config))
    assert got.returncode == 0, got.stdout + got.stderr
    assert "1 found, 1 retrieved, 0 failed" in got.stdout
    assert _received(database) == {archive.studies["chest_cr"]: ORTHANC_AET}

    # QIDO-RS + WADO-RS: the week's chest studies; the one already here is stored again as a duplicate
    web = run_gazex(
        "pull", "web", "--modality", "CR,DX", "--body-part", "chest", "--date-from", WEEK[0], "--date-to", WEEK[1],
        "--here", "--config", str(config),
    )  # fmt: skip
    assert web.returncode == 0, web.stdout + web.stderr
    assert "2 found, 2 retrieved, 0 failed" in web.stdout
    received = _received(database)
    assert set(received) == archive.wanted
    assert received[archive.studies["chest_dx"]] == "PACSWEB"
    # the bytes stored are Orthanc's instance (as held): same SOP Instance UID and pixel data
    [path] = [
        row[0]
        for row in index_rows(
            database,
            "SELECT i.file_path FROM instances i JOIN series s ON i.series_pk = s.id JOIN studies t "
            "ON s.study_pk = t.id WHERE t.study_instance_uid = :uid",
            uid=archive.studies["chest_dx"],
        )
    ]
    stored = pydicom.dcmread(tmp_path / "gazex" / "spool" / path)
    original = pydicom.dcmread(orthanc.log_path.parent / "chest_dx.dcm")
    assert stored.SOPInstanceUID == original.SOPInstanceUID and stored.PixelData == original.PixelData
    # the audit trail has an "instances received" message for each retrieve (C-GET, then WADO-RS),
    # naming the source as the sender, as for instances received over an association
    audit = (tmp_path / "gazex" / "audit" / "audit.log").read_text(encoding="utf-8").splitlines()
    transfers = [line for line in audit if 'csd-code="110104"' in line]
    assert any(ORTHANC_AET in line and archive.studies["chest_cr"] in line for line in transfers)
    assert any("PACSWEB" in line and archive.studies["chest_dx"] in line for line in transfers)
    # ... and a Query message for each C-FIND and QIDO-RS request the pulls sent, all answered
    queries = [_query_of(assert_valid(line.encode())) for line in audit if 'csd-code="110112"' in line]
    assert queries and {outcome for outcome, _ in queries} == {"0"}
    identifiers = [query for _, query in queries if isinstance(query, pydicom.Dataset)]
    assert identifiers and all(found.StudyInstanceUID == archive.studies["chest_cr"] for found in identifiers)
    urls = [query for _, query in queries if isinstance(query, str)]
    base = f"http://127.0.0.1:{orthanc_http}/dicom-web"
    assert {url.partition("?")[0] for url in urls} >= {
        f"{base}/studies",
        f"{base}/studies/{archive.studies['chest_dx']}/series",
    }
    assert sum("ModalitiesInStudy=CR" in url for url in urls) == sum("ModalitiesInStudy=DX" in url for url in urls) == 1


def test_a_c_move_to_an_ae_orthanc_does_not_know_is_refused_retried_and_fails_with_the_reason(
    tmp_path: Path, free_port: Callable[[], int], orthanc_binary: Path, chest: pydicom.Dataset, stop_after: list[Any]
) -> None:
    gateway_port, orthanc_http, orthanc_dicom = free_port(), free_port(), free_port()
    orthanc = _pacs(orthanc_binary, tmp_path / "orthanc", orthanc_http, orthanc_dicom, gateway_port)
    stop_after.append(orthanc)
    archive = _load(orthanc, chest)
    settings = gateway_beside_orthanc(
        tmp_path / "gazex",
        gateway_port,
        orthanc_dicom,
        sources={"pacs": _source(orthanc, move_destination_ae="GAZEXMOVE")},
        pull={"max_attempts": 2, "base_delay_seconds": 0.2, "max_delay_seconds": 0.2},
    )
    settings["dicom"]["ae_titles"] = [GATEWAY_AET, "GAZEXMOVE"]  # ours, but Orthanc knows only the first
    config = write_config(tmp_path / "gazex.yaml", settings)
    assert run_gazex("db", "upgrade", "--config", str(config)).returncode == 0
    pulled = run_gazex("pull", "pacs", "--study-uid", archive.studies["chest_cr"], "--here", "--config", str(config))
    assert pulled.returncode == 1, pulled.stdout + pulled.stderr
    assert "failed: 1 found, 0 retrieved, 1 failed" in pulled.stdout
    [item] = index_rows(
        f"sqlite:///{tmp_path / 'gazex' / 'gazex.db'}", "SELECT state, attempts, last_error FROM pull_items"
    )
    # Orthanc answers an unknown destination with 0xC000 (unable to process), not 0xA801
    assert (item.state, item.attempts) == ("failed", 2)
    assert "C-MOVE refused with 0xC000: unable to process" in item.last_error
    assert "does the archive know the move destination 'GAZEXMOVE'" in item.last_error
    assert "Unknown modality for AET: GAZEXMOVE" in orthanc.log()
    # Orthanc still holds the study; nothing was removed or changed there
    assert _result_modalities(orthanc, archive.studies["chest_cr"]) == {"CR"}


def test_a_pull_stopped_half_way_goes_on_when_serve_starts_again(
    tmp_path: Path, free_port: Callable[[], int], orthanc_binary: Path, chest: pydicom.Dataset, stop_after: list[Any]
) -> None:
    gateway_port, orthanc_http, orthanc_dicom = free_port(), free_port(), free_port()
    orthanc = _pacs(orthanc_binary, tmp_path / "orthanc", orthanc_http, orthanc_dicom, gateway_port)
    stop_after.append(orthanc)
    archive = _load(orthanc, chest)
    database = f"sqlite:///{tmp_path / 'gazex' / 'gazex.db'}"

    def configure(per_hour: int) -> Path:
        settings = gateway_beside_orthanc(
            tmp_path / "gazex",
            gateway_port,
            orthanc_dicom,
            sources={"pacs": _source(orthanc, max_studies_per_hour=per_hour)},
            pull={"poll_seconds": 0.2},
        )
        return write_config(tmp_path / "gazex.yaml", settings)

    config = configure(1)
    assert run_gazex("db", "upgrade", "--config", str(config)).returncode == 0
    queued = run_gazex(
        "pull", "pacs", "--modality", "CR", "--date-from", "20241201", "--date-to", WEEK[1], "--config", str(config)
    )  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    assert "pull 1: queued" in queued.stdout
    serve = start_serve(config, gateway_port, tmp_path / "serve-1.log")
    stop_after.append(serve)

    def items() -> list[tuple[str, str, int]]:
        rows = index_rows(database, "SELECT study_instance_uid, state, attempts FROM pull_items ORDER BY id")
        return [tuple(row) for row in rows]

    wait_until(lambda: [row for row in items() if row[1] == "done"], 60, "the first study")
    # one study per hour: the other two wait; stop gazex serve now
    assert serve.terminate() == 0
    first = items()
    assert len(first) == 3 and [row[1] for row in first].count("done") == 1
    assert [row[1] for row in first].count("pending") == 2
    received_before = _received(database)

    serve = start_serve(configure(10), gateway_port, tmp_path / "serve-2.log")
    stop_after.append(serve)
    wait_until(lambda: all(row[1] == "done" for row in items()), 60, "the rest of the pull")
    after = items()
    assert {row[0] for row in after} == {archive.studies[name] for name in ("chest_cr", "hand_cr", "old_chest")}
    assert all(row[2] == 1 for row in after)  # none was retrieved twice
    assert set(_received(database)) == {row[0] for row in after} and set(received_before) <= set(_received(database))
    status = run_gazex("pull", "status", "1", "--config", str(config))
    assert "pull 1: done: 3 found, 3 retrieved, 0 failed, 0 to go" in status.stdout
    assert serve.terminate() == 0
