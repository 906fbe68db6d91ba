"""``gazex serve`` as a process, with dcmtk ``echoscu``/``storescu`` (plain and TLS) and ``gazex echo``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from tests.ingest_support import (
    Certificates,
    ServeProcess,
    clean_environment,
    index_rows,
    make_pki,
    serve_config,
    small_cr,
    start_serve,
    write_config,
    write_dataset,
)

pytestmark = pytest.mark.integration

# patient data that must never reach a log
PATIENT_NAME = "SENTINEL^PHI^NAME"
PATIENT_ID = "PHI-ID-424242"
BIRTH_DATE = "19011231"
ACCESSION = "PHIACC4242"


def run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def gazex(*args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "gateway.cli", *args])


@pytest.fixture
def serve(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(**sections: dict[str, object]) -> ServeProcess:
        port = free_port()
        config = write_config(tmp_path / f"gazex-{port}.yaml", serve_config(tmp_path / "data", port, **sections))
        process = start_serve(config, port, tmp_path / f"serve-{port}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'gazex.db'}"


def test_echoscu_and_storescu_uncompressed_and_jpeg2000(
    serve: Callable[..., ServeProcess],
    dicom_tool: Callable[[str], Path],
    tmp_path: Path,
    chest_cr_path: Path,
    chest_cr_j2k_path: Path,
) -> None:
    node = serve()
    port = str(node.port)
    echo = run([str(dicom_tool("echoscu")), "-aec", "GAZEX", "127.0.0.1", port])
    assert echo.returncode == 0, echo.stderr
    storescu = str(dicom_tool("storescu"))
    plain = run([storescu, "-aec", "GAZEX", "127.0.0.1", port, str(chest_cr_path)])
    assert plain.returncode == 0, plain.stderr
    # a copy of the image in JPEG 2000 with its own UID, proposed in its own transfer syntax
    j2k = pydicom.dcmread(chest_cr_j2k_path)
    j2k.SOPInstanceUID = j2k.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    j2k_path = write_dataset(j2k, tmp_path / "j2k.dcm")
    compressed = run([storescu, "-xv", "-aec", "GAZEX", "127.0.0.1", port, str(j2k_path)])
    assert compressed.returncode == 0, compressed.stderr
    rows = {row.sop_instance_uid: row for row in index_rows(db_url(tmp_path), "SELECT * FROM instances")}
    assert rows[j2k.SOPInstanceUID].transfer_syntax_uid == "1.2.840.10008.1.2.4.90"
    stored_j2k = tmp_path / "data" / "spool" / rows[j2k.SOPInstanceUID].file_path
    # stored as received: dcmtk sent the encapsulated pixel data, it was not transcoded
    assert pydicom.dcmread(stored_j2k).PixelData == j2k.PixelData
    assert pydicom.dcmread(stored_j2k).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    cr = rows["1.3.6.1.4.1.5962.1.1.9.1.1.20040826185059.5457"]
    assert (cr.calling_ae_title, cr.called_ae_title, cr.view_position, cr.rows, cr.columns) == (
        "STORESCU",
        "GAZEX",
        "PA",
        1955,
        1841,
    )
    assert node.terminate() == 0


def test_many_instances_with_invented_uids(
    serve: Callable[..., ServeProcess], dicom_tool: Callable[[str], Path], tmp_path: Path, chest_cr: Dataset
) -> None:
    node = serve()
    source = write_dataset(small_cr(chest_cr, rows=256, columns=256), tmp_path / "small.dcm")
    result = run(
        [
            str(dicom_tool("storescu")),
            "-aec",
            "GAZEX",
            "--repeat",
            "25",
            "+II",
            "127.0.0.1",
            str(node.port),
            str(source),
        ]
    )
    assert result.returncode == 0, result.stderr
    rows = index_rows(db_url(tmp_path), "SELECT sop_instance_uid, file_path FROM instances")
    assert len(rows) == 25
    for row in rows:
        stored = tmp_path / "data" / "spool" / row.file_path
        assert pydicom.dcmread(stored).SOPInstanceUID == row.sop_instance_uid
    assert node.terminate() == 0


def test_rejections_are_logged_without_phi(
    serve: Callable[..., ServeProcess], dicom_tool: Callable[[str], Path], tmp_path: Path, chest_cr: Dataset
) -> None:
    node = serve(dicom={"allowed_callers": [{"ae_title": "STORESCU", "host": "127.0.0.1"}]})
    port = str(node.port)
    echoscu = str(dicom_tool("echoscu"))
    unknown = run([echoscu, "-aet", "INTRUDER", "-aec", "GAZEX", "127.0.0.1", port])
    assert unknown.returncode != 0
    assert "Rejected Permanent" in unknown.stderr and "Calling AE Title Not Recognized" in unknown.stderr
    wrong_called = run([echoscu, "-aet", "STORESCU", "-aec", "SOMEONE", "127.0.0.1", port])
    assert "Called AE Title Not Recognized" in wrong_called.stderr
    # instances carrying patient data: stored, refused as truncated, refused as mismatched
    with_phi = small_cr(
        chest_cr, PatientName=PATIENT_NAME, PatientID=PATIENT_ID, PatientBirthDate=BIRTH_DATE, AccessionNumber=ACCESSION
    )
    good = write_dataset(with_phi, tmp_path / "phi.dcm")
    truncated = tmp_path / "phi-truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:-2000])
    storescu = str(dicom_tool("storescu"))
    assert run([storescu, "-aet", "STORESCU", "-aec", "GAZEX", "127.0.0.1", port, str(good)]).returncode == 0
    run([storescu, "-aet", "STORESCU", "-aec", "GAZEX", "127.0.0.1", port, str(truncated)])
    assert node.terminate() == 0
    log = node.log()
    assert "rejected (permanent) the association from 'INTRUDER' at 127.0.0.1" in log
    assert "called AE title 'SOMEONE' is not ours" in log
    assert f"stored {with_phi.SOPInstanceUID} (new)" in log
    for secret in (PATIENT_NAME, "SENTINEL", PATIENT_ID, BIRTH_DATE, ACCESSION):
        assert secret not in log
    # the index does hold the patient data (it is the index's job), the log does not
    (row,) = index_rows(db_url(tmp_path), "SELECT patient_name FROM patients")
    assert row.patient_name == PATIENT_NAME


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    from tests.conftest import require_tool

    return make_pki(require_tool("openssl"), tmp_path_factory.mktemp("pki"))


def test_dicom_tls_with_mutual_authentication(
    serve: Callable[..., ServeProcess],
    dicom_tool: Callable[[str], Path],
    pki: Certificates,
    tmp_path: Path,
    chest_cr_path: Path,
) -> None:
    node = serve(
        dicom={
            "tls": {
                "enabled": True,
                "certificate": str(pki.server_cert),
                "private_key": str(pki.server_key),
                "ca_certificates": str(pki.ca),
                "require_client_certificate": True,
            }
        }
    )
    port = str(node.port)
    client = ["+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca)]
    echo = run([str(dicom_tool("echoscu")), *client, "-aec", "GAZEX", "127.0.0.1", port])
    assert echo.returncode == 0, echo.stderr
    store = run([str(dicom_tool("storescu")), *client, "-aec", "GAZEX", "127.0.0.1", port, str(chest_cr_path)])
    assert store.returncode == 0, store.stderr
    (row,) = index_rows(db_url(tmp_path), "SELECT file_path FROM instances")
    stored = pydicom.dcmread(tmp_path / "data" / "spool" / row.file_path)
    assert stored.PixelData == pydicom.dcmread(chest_cr_path).PixelData
    # a certificate from another CA, or none at all, is refused (mutual TLS)
    stranger = ["+tls", str(pki.stranger_key), str(pki.stranger_cert), "+cf", str(pki.ca)]
    assert run([str(dicom_tool("echoscu")), *stranger, "-aec", "GAZEX", "127.0.0.1", port]).returncode != 0
    anonymous = ["+tla", "+cf", str(pki.ca)]
    assert run([str(dicom_tool("echoscu")), *anonymous, "-aec", "GAZEX", "127.0.0.1", port]).returncode != 0
    # plain DICOM on the TLS port is refused
    assert run([str(dicom_tool("echoscu")), "-aec", "GAZEX", "127.0.0.1", port]).returncode != 0
    # gazex echo, the IT tool, over TLS
    ok = gazex("echo", "127.0.0.1", port, "GAZEX", "--tls", "--tls-ca", str(pki.ca),
               "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key))  # fmt: skip
    assert ok.returncode == 0 and "success" in ok.stdout, ok.stdout + ok.stderr
    refused = gazex("echo", "127.0.0.1", port, "GAZEX", "--tls", "--tls-ca", str(pki.ca))
    assert refused.returncode == 1 and "TLS handshake" in refused.stdout and "CERTIFICATE_REQUIRED" in refused.stdout
    assert node.terminate() == 0
    log = node.log()
    assert "TLS handshake with 127.0.0.1 failed" in log


def test_tls_without_client_certificates(
    serve: Callable[..., ServeProcess], dicom_tool: Callable[[str], Path], pki: Certificates
) -> None:
    node = serve(
        dicom={"tls": {"enabled": True, "certificate": str(pki.server_cert), "private_key": str(pki.server_key)}}
    )
    anonymous = ["+tla", "+cf", str(pki.ca)]
    echo = run([str(dicom_tool("echoscu")), *anonymous, "-aec", "GAZEX", "127.0.0.1", str(node.port)])
    assert echo.returncode == 0, echo.stderr
    untrusted = gazex("echo", "127.0.0.1", str(node.port), "GAZEX", "--tls")  # system CAs do not know ours
    assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stdout
    assert node.terminate() == 0


def test_gazex_echo_reports_rejections_and_unreachable_peers(serve: Callable[..., ServeProcess]) -> None:
    node = serve(dicom={"allowed_callers": [{"ae_title": "PACS"}]})
    ok = gazex("echo", "127.0.0.1", str(node.port), "GAZEX", "--calling-ae", "PACS")
    assert ok.returncode == 0 and "success" in ok.stdout
    rejected = gazex("echo", "127.0.0.1", str(node.port), "GAZEX", "--calling-ae", "OTHER")
    assert rejected.returncode == 1
    assert "association rejected permanently: calling AE title not recognised" in rejected.stdout
    wrong = gazex("echo", "127.0.0.1", str(node.port), "NOT_US", "--calling-ae", "PACS")
    assert "called AE title not recognised" in wrong.stdout
    assert node.terminate() == 0
    closed = gazex("echo", "127.0.0.1", str(node.port), "GAZEX", "--timeout", "5")
    assert closed.returncode == 1 and "Connection refused" in closed.stdout


def test_serve_refuses_an_old_schema_when_told_not_to_upgrade(tmp_path: Path, free_port: Callable[[], int]) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "gazex.yaml", serve_config(tmp_path / "data", port, database={"upgrade_on_start": False})
    )
    result = run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)])
    assert result.returncode == 2
    assert "gazex: error:" in result.stderr and "run `gazex db upgrade`" in result.stderr
    assert gazex("db", "upgrade", "--config", str(config)).returncode == 0
    status = gazex("db", "status", "--config", str(config))
    assert status.returncode == 0 and "up to date" in status.stdout


def test_serve_stops_on_a_bad_configuration(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("dicom:\n  port: eleven\n  colour: blue\n", encoding="utf-8")
    result = run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)])
    assert result.returncode == 2
    assert "dicom.port = 'eleven'" in result.stderr
    assert "dicom.colour: unknown key" in result.stderr


def test_serve_flags_override_the_file(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path]
) -> None:
    port = free_port()
    config = write_config(tmp_path / "gazex.yaml", serve_config(tmp_path / "data", free_port()))
    node = start_serve(
        config, port, tmp_path / "serve.log", "--port", str(port), "--ae-title", "FLAGGED", "--data-dir",
        str(tmp_path / "flagged"),
    )  # fmt: skip
    try:
        assert run([str(dicom_tool("echoscu")), "-aec", "FLAGGED", "127.0.0.1", str(port)]).returncode == 0
        assert (tmp_path / "flagged" / "gazex.db").exists()
    finally:
        assert node.terminate() == 0


def test_environment_overrides_reach_serve(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path]
) -> None:
    port = free_port()
    config = write_config(tmp_path / "gazex.yaml", serve_config(tmp_path / "data", port))
    env = clean_environment() | {"GAZEX_DICOM__AE_TITLES": '["FROMENV"]'}
    node = start_serve(config, port, tmp_path / "serve.log", env=env)
    try:
        assert run([str(dicom_tool("echoscu")), "-aec", "FROMENV", "127.0.0.1", str(port)]).returncode == 0
    finally:
        assert node.terminate() == 0


def test_serve_explains_a_busy_port_and_a_spool_in_use(
    serve: Callable[..., ServeProcess], tmp_path: Path, free_port: Callable[[], int]
) -> None:
    first = serve()
    busy = write_config(tmp_path / "busy.yaml", serve_config(tmp_path / "other", first.port))
    result = run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(busy)])
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{first.port}" in result.stderr
    shared = write_config(tmp_path / "shared.yaml", serve_config(tmp_path / "data", free_port()))
    result = run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(shared)])
    assert result.returncode == 2 and "is in use by another gazex process" in result.stderr
    assert first.terminate() == 0
