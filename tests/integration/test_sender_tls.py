"""The C-STORE sender over DICOM TLS, with a client certificate, against a TLS archive on loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from gateway.config import load_settings
from gateway.config.pipeline import Destination
from gateway.demo.archive import RecordingArchive
from gateway.dicom.tls import server_context
from gateway.pipeline.sender import SendError, StoreSender
from tests.conftest import require_tool
from tests.ingest_support import Certificates, make_pki, small_cr, write_dataset

pytestmark = pytest.mark.integration


def destination(port: int, pki: Certificates, **tls: object) -> Destination:
    values = {"enabled": True, "ca_certificates": str(pki.ca), "certificate": str(pki.client_cert),
              "private_key": str(pki.client_key), **tls}  # fmt: skip
    settings = load_settings(
        overrides={"destinations": {"tls": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": port, "tls": values}}},
        environ={},
    )
    found = settings.destinations["tls"]
    assert isinstance(found, Destination)
    return found


def test_outputs_go_over_mutual_tls_and_a_wrong_ca_is_refused_with_the_reason(
    tmp_path: Path, free_port: Callable[[], int], chest_cr: Dataset
) -> None:
    pki = make_pki(require_tool("openssl"), tmp_path / "pki")
    tls = load_settings(
        overrides={"dicom": {"tls": {"enabled": True, "certificate": str(pki.server_cert),
                                     "private_key": str(pki.server_key), "ca_certificates": str(pki.ca),
                                     "require_client_certificate": True}}},
        environ={},
    ).dicom.tls  # fmt: skip
    image = write_dataset(small_cr(chest_cr, rows=32, columns=32), tmp_path / "image.dcm")
    port = free_port()
    with RecordingArchive(port, ssl_context=server_context(tls)) as archive:
        sender = StoreSender()
        with sender.open("tls", destination(port, pki), "GAZEX", [str(chest_cr.SOPClassUID)]) as session:
            assert session.send(image) == 0x0000
        assert len(archive.counts()) == 1 and archive.snapshot()[0].calling_ae_title == "GAZEX"
        stranger = destination(port, pki, certificate=str(pki.stranger_cert), private_key=str(pki.stranger_key))
        assert "TLS handshake with 127.0.0.1" in refusal(sender, stranger, chest_cr)
        untrusting = destination(port, pki, ca_certificates=str(pki.client_cert))
        assert "failed: CERTIFICATE_VERIFY_FAILED" in refusal(sender, untrusting, chest_cr)


def refusal(sender: StoreSender, where: Destination, image: Dataset) -> str:
    with pytest.raises(SendError) as refused, sender.open("tls", where, "GAZEX", [str(image.SOPClassUID)]):
        pass
    return str(refused.value)
