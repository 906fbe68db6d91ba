"""STOW-RS into a running ``gazex serve`` from a real DICOMweb client (dicomweb-client's
``DICOMwebClient.store_instances``): the instances are stored, indexed under the caller's AE title,
routed by a rule on that caller, analysed (FakeEngine) and delivered like C-STORE ones; metrics
and the audit trail count them; refusals leave the spool and index as they were."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dicomweb_client
import httpx
import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    Comprehensive3DSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    SegmentationStorage,
)

from benchmarks._net import wait_for_port
from gateway.demo.archive import RecordingArchive
from tests.ingest_support import REPO_ROOT, clean_environment, small_cr, start_serve
from tests.integration.pipeline_support import pipeline_config, query, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "a long test password"  # noqa: S105 - a test account's


def gazex(config: Path, *args: str, stdin: str | None = None) -> str:
    """``gazex --config FILE ARGS`` (the CLI under test); its standard output."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--config", str(config)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=clean_environment(),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def http_error(call: Callable[[], object]) -> requests.Response:
    """The response of a request that dicomweb-client raised an HTTPError for."""
    with pytest.raises(requests.HTTPError) as caught:
        call()
    assert caught.value.response is not None
    return caught.value.response


def test_a_dicomweb_client_stores_a_study_that_is_routed_analysed_and_delivered(
    tmp_path: Path, free_port: Callable[[], int], chest_cr: Dataset
) -> None:
    port, http_port, archive_port = free_port(), free_port(), free_port()
    data = tmp_path / "data"
    study = generate_uid()
    frontal = small_cr(chest_cr, rows=128, columns=128, StudyInstanceUID=study)
    lateral = small_cr(chest_cr, rows=128, columns=128, StudyInstanceUID=study, SeriesInstanceUID=generate_uid())
    config = pipeline_config(
        tmp_path / "gazex.yaml",
        data,
        port,
        archive_port,
        http={"enabled": True, "port": http_port},
        dicomweb={"enabled": True, "callers": {"modality": "STOWSCU"}},
        # only what the STOW-RS caller sends is analysed: the rule matches its caller name
        routing={"rules": [{"name": "from-stow", "match": {"calling_ae": ["STOWSCU"]}, "destinations": ["archive"]}]},
    )
    serve = start_serve(config, port, tmp_path / "serve.log")
    try:
        wait_for_port(http_port, serve.process)
        gazex(config, "users", "add", "modality", "--role", "viewer", "--password-stdin", stdin=PASSWORD + "\n")
        gazex(config, "users", "add", "watcher", "--role", "viewer", "--password-stdin", stdin=PASSWORD + "\n")
        token = gazex(config, "users", "token", "modality", "--name", "stow").strip()
        watcher = gazex(config, "users", "token", "watcher", "--name", "stow").strip()
        base = f"http://127.0.0.1:{http_port}/dicomweb"
        client = dicomweb_client.DICOMwebClient(base, headers={"Authorization": f"Bearer {token}"})
        with RecordingArchive(port=archive_port) as archive:
            response = client.store_instances([frontal, lateral])
            assert [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence] == [
                frontal.SOPInstanceUID,
                lateral.SOPInstanceUID,
            ]
            assert "FailedSOPSequence" not in response
            url = f"sqlite:///{data / 'gazex.db'}"
            rows = query(url, "SELECT sop_instance_uid, calling_ae_title FROM instances ORDER BY id")
            assert {(row.sop_instance_uid, row.calling_ae_title) for row in rows} == {
                (frontal.SOPInstanceUID, "STOWSCU"),
                (lateral.SOPInstanceUID, "STOWSCU"),
            }

            def delivered() -> list[str] | None:
                found = query(url, "SELECT status FROM deliveries")
                return [row.status for row in found] if found and found[0].status == "delivered" else None

            assert wait_for(delivered, timeout=90, what="the STOW-RS study's results delivered") == ["delivered"]
            assert {item.study_instance_uid for item in archive.snapshot()} == {study}
            assert {item.sop_class_uid for item in archive.snapshot()} == {
                Comprehensive3DSRStorage,
                SegmentationStorage,
                GrayscaleSoftcopyPresentationStateStorage,
            }

            # a wrong study for the study resource, and a token that is not a caller: refused, nothing changes
            before = sorted(path.relative_to(data) for path in (data / "spool").rglob("*.dcm"))
            stray = small_cr(chest_cr, StudyInstanceUID=generate_uid())
            conflict = http_error(lambda: client.store_instances([stray], study_instance_uid=study))
            assert conflict.status_code == 409
            failed = conflict.json()["00081198"]["Value"][0]
            assert failed["00081197"]["Value"] == [0xA900]
            outsider = dicomweb_client.DICOMwebClient(base, headers={"Authorization": f"Bearer {watcher}"})
            assert http_error(lambda: outsider.store_instances([stray])).status_code == 403
            stranger = dicomweb_client.DICOMwebClient(base, headers={"Authorization": "Bearer gzx_no-such-token"})
            assert http_error(lambda: stranger.store_instances([stray])).status_code == 401
            assert sorted(path.relative_to(data) for path in (data / "spool").rglob("*.dcm")) == before

        metrics = httpx.get(
            f"http://127.0.0.1:{http_port}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ).text
        assert "gazex_instances_received_total 2.0" in metrics
        assert 'gazex_store_failures_total{status="0xA900"} 1.0' in metrics
        assert serve.terminate() == 0, serve.log()
    finally:
        serve.kill()
    audit = (data / "audit" / "audit.log").read_text(encoding="utf-8")
    assert "STOWSCU" in audit and study in audit  # Instances Transferred from the STOW-RS caller
    log = serve.log()
    assert "STOW-RS from STOWSCU (user modality) at 127.0.0.1: 2 stored, 0 refused" in log


def test_a_sender_authenticates_by_its_client_certificate_over_mutual_tls(
    tmp_path: Path, free_port: Callable[[], int], chest_cr: Dataset
) -> None:
    from tests.conftest import require_tool
    from tests.ingest_support import make_pki

    pki = make_pki(require_tool("openssl"), tmp_path / "pki")
    port, http_port, archive_port = free_port(), free_port(), free_port()
    data = tmp_path / "data"
    config = pipeline_config(
        tmp_path / "gazex.yaml",
        data,
        port,
        archive_port,
        http={
            "enabled": True,
            "port": http_port,
            "tls": {
                "certificate": str(pki.server_cert),
                "private_key": str(pki.server_key),
                "client_ca_certificates": str(pki.ca),
            },
        },
        dicomweb={"enabled": True, "certificate_callers": {"client.gazex.test": "CERTSCU"}},
    )
    serve = start_serve(config, port, tmp_path / "serve.log")
    base = f"https://127.0.0.1:{http_port}"
    study = generate_uid()
    instance = small_cr(chest_cr, rows=64, columns=64, StudyInstanceUID=study)
    try:
        wait_for_port(http_port, serve.process)
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE in the environment overrides verify
        session.verify = str(pki.ca)
        session.cert = (str(pki.client_cert), str(pki.client_key))  # mutual TLS: our certificate, no token
        dicomweb_client.DICOMwebClient(f"{base}/dicomweb", session=session).store_instances([instance])
        rows = query(f"sqlite:///{data / 'gazex.db'}", "SELECT sop_instance_uid, calling_ae_title FROM instances")
        assert [(row.sop_instance_uid, row.calling_ae_title) for row in rows] == [(instance.SOPInstanceUID, "CERTSCU")]

        # the certificate is good for the intake only: the API does not know it
        def tls(cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
            context = ssl.create_default_context(cafile=str(pki.ca))
            if cert is not None:
                context.load_cert_chain(str(cert), str(key))
            return context

        api = httpx.get(f"{base}/api/v1/studies", verify=tls(pki.client_cert, pki.client_key))
        assert api.status_code == 401
        # no certificate and no token: 401; a certificate of another CA: the handshake fails
        bare = httpx.post(f"{base}/dicomweb/studies", verify=tls(), content=b"")
        assert bare.status_code == 401
        with pytest.raises(httpx.TransportError):  # refused in the TLS handshake (with TLS 1.3, just after it)
            httpx.post(f"{base}/dicomweb/studies", verify=tls(pki.stranger_cert, pki.stranger_key), content=b"")
    finally:
        assert serve.terminate() == 0
