"""The harness itself: external tools are found, and they read the real chest radiograph."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

pytestmark = pytest.mark.integration


def test_dcmdump_reads_the_chest_cr(dicom_tool: Callable[[str], Path], chest_cr_path: Path) -> None:
    dcmdump = dicom_tool("dcmdump")
    result = subprocess.run(
        [str(dcmdump), "--print-short", str(chest_cr_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "(0008,0060) CS [CR]" in result.stdout
    assert "(0018,0015) CS [CHEST]" in result.stdout
    assert "(0028,0004) CS [MONOCHROME1]" in result.stdout


def test_dciodvfy_accepts_the_chest_cr_header(dicom_tool: Callable[[str], Path], chest_cr_path: Path) -> None:
    dciodvfy = dicom_tool("dciodvfy")
    result = subprocess.run(
        [str(dciodvfy), str(chest_cr_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "CRImage" in output, output[:2000]
    # The WG04 sample carries PixelSpacing 0\0, which dciodvfy rightly flags.
    assert "Value is zero for value 1 of attribute <Pixel Spacing>" in output


def test_orthanc_binary_reports_its_version(dicom_tool: Callable[[str], Path]) -> None:
    orthanc = dicom_tool("Orthanc")
    result = subprocess.run([str(orthanc), "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert "Orthanc" in result.stdout


def test_chest_cr_pair_holds_the_same_image(chest_cr: pydicom.Dataset, chest_cr_j2k: pydicom.Dataset) -> None:
    assert chest_cr.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert chest_cr_j2k.file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
    assert (chest_cr.pixel_array == chest_cr_j2k.pixel_array).all()


def test_free_port_gives_distinct_bindable_ports(free_port: Callable[[], int]) -> None:
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_postgres_is_reachable(postgres_url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_postgres_database_is_fresh_and_dropped(postgres_database: str, postgres_url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_database)
    with engine.connect() as connection:
        tables = connection.execute(
            sqlalchemy.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        ).scalar()
        assert tables == 0
    engine.dispose()
