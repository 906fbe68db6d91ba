"""Orthanc as the PACS, with the shipped configuration and routing script, sending to ``gazex serve``.

One Orthanc and one ``gazex serve`` on free loopback ports; images go into Orthanc over DICOM
with dcmtk ``storescu``, as a modality would send them.  Every wait polls with a deadline.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.ingest_support import index_rows, serve_config, start_serve, write_config
from tests.orthanc_support import config_for_test, start_orthanc, wait_until

pytestmark = pytest.mark.integration

ORTHANC_AET = "PACSTEST"
GATEWAY_AET = "GAZEXTEST"


def _variant(source: pydicom.Dataset, path: Path, *, new_study: bool, **changes: str) -> pydicom.Dataset:
    dataset = copy.deepcopy(source)
    if new_study:
        dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    for keyword, value in changes.items():
        if value == "":
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    dataset.save_as(path, enforce_file_format=True)
    return dataset


def _storescu(storescu: Path, port: int, *files: Path) -> None:
    subprocess.run(
        [str(storescu), "-aet", "MODALITY", "-aec", ORTHANC_AET, "127.0.0.1", str(port), *map(str, files)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_orthanc_routes_chest_studies_to_the_gateway_and_nothing_else(
    tmp_path: Path,
    free_port: Callable[[], int],
    dicom_tool: Callable[[str], Path],
    chest_cr_path: Path,
) -> None:
    orthanc_binary = dicom_tool("Orthanc")
    storescu = dicom_tool("storescu")
    chest = pydicom.dcmread(chest_cr_path)

    gateway_port = free_port()
    settings = serve_config(
        tmp_path / "gazex",
        gateway_port,
        dicom={
            "host": "127.0.0.1",
            "port": gateway_port,
            "ae_titles": [GATEWAY_AET],
            "allowed_callers": [{"ae_title": ORTHANC_AET, "host": "127.0.0.1"}],
        },
    )
    config = write_config(tmp_path / "gazex.yaml", settings)
    database = f"sqlite:///{tmp_path / 'gazex' / 'gazex.db'}"
    serve = start_serve(config, gateway_port, tmp_path / "serve.log")
    orthanc = None
    try:
        orthanc = start_orthanc(
            orthanc_binary,
            tmp_path / "orthanc",
            config_for_test(free_port(), free_port()),
            {
                "ORTHANC_AET": ORTHANC_AET,
                "GAZEX_AET": GATEWAY_AET,
                "GAZEX_HOST": "127.0.0.1",
                "GAZEX_PORT": str(gateway_port),
            },
        )

        def received() -> set[str]:
            return {row[0] for row in index_rows(database, "SELECT sop_instance_uid FROM instances")}

        # 1. a chest CR (Body Part Examined CHEST) is routed once the study is stable
        _storescu(storescu, orthanc.dicom_port, chest_cr_path)
        wait_until(lambda: str(chest.SOPInstanceUID) in received(), 60, "the chest CR to reach the gateway")
        [instance] = orthanc.get(f"/studies/{orthanc.study_id(chest.StudyInstanceUID)}/instances")
        routed_mark = orthanc.get(f"/instances/{instance['ID']}/metadata?expand")["GazexRouted"]
        assert routed_mark.endswith(" to gazex")

        # 2. a non-chest study (a hand CR) and a chest-less CR without body part or frontal view stay in Orthanc
        hand = _variant(chest, tmp_path / "hand.dcm", new_study=True, BodyPartExamined="HAND")
        lateral_only = _variant(chest, tmp_path / "lateral.dcm", new_study=True, BodyPartExamined="", ViewPosition="LL")
        _storescu(storescu, orthanc.dicom_port, tmp_path / "hand.dcm", tmp_path / "lateral.dcm")
        for study_uid in (str(hand.StudyInstanceUID), str(lateral_only.StudyInstanceUID)):
            orthanc.wait_for_log(f"study {study_uid} not routed: no CR/DX chest image", 60)

        # 3. a late image of the chest study (a frontal DX without body part) goes alone: the first is not resent
        late = _variant(chest, tmp_path / "late.dcm", new_study=False, BodyPartExamined="", ViewPosition="AP")
        _storescu(storescu, orthanc.dicom_port, tmp_path / "late.dcm")
        wait_until(lambda: str(late.SOPInstanceUID) in received(), 60, "the late image to reach the gateway")
        wait_until(
            lambda: (
                f'study {chest.StudyInstanceUID}: sending 1 instance(s) to "gazex" (1 sent before)' in orthanc.log()
            ),
            30,
            "Orthanc to log the second routing of the chest study",
        )
        assert received() == {str(chest.SOPInstanceUID), str(late.SOPInstanceUID)}
    finally:
        if orthanc is not None:
            orthanc.stop()
        assert serve.terminate() == 0
    stores = [line for line in serve.log().splitlines() if "stored " in line]
    assert len(stores) == 2, serve.log()
