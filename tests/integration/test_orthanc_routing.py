"""The round trip through a real PACS: Orthanc, with the shipped configuration and routing
script, routes a chest CR to ``gazex serve``, which sends its SR, SEG and GSPS back into the
same study in Orthanc.

One Orthanc and one ``gazex serve`` (the FakeEngine: ``model.path: fake``; a one-second quiet
period) on free loopback ports; images go into Orthanc over DICOM with dcmtk ``storescu``, as
a modality sends them; results are read back through Orthanc's REST API.  Every wait polls
with a deadline.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from gateway.db import create_database_engine
from gateway.pipeline import status
from tests.ingest_support import index_rows, start_serve, write_config
from tests.orthanc_support import (
    GATEWAY_AET,
    ORTHANC_AET,
    OrthancProcess,
    config_for_test,
    gateway_beside_orthanc,
    start_orthanc,
    wait_until,
)

pytestmark = pytest.mark.integration

RESULT_SOP_CLASSES = {
    "SR": "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "SEG": "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "PR": "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
}


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


def _series_by_modality(orthanc: OrthancProcess, study_id: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for series in orthanc.get(f"/studies/{study_id}/series"):
        found.setdefault(series["MainDicomTags"]["Modality"], []).append(series)
    return found


def test_round_trip_through_orthanc(
    tmp_path: Path,
    free_port: Callable[[], int],
    dicom_tool: Callable[[str], Path],
    chest_cr_path: Path,
) -> None:
    orthanc_binary = dicom_tool("Orthanc")
    storescu = dicom_tool("storescu")
    chest = pydicom.dcmread(chest_cr_path)

    gateway_port, orthanc_http, orthanc_dicom = free_port(), free_port(), free_port()
    settings = gateway_beside_orthanc(tmp_path / "gazex", gateway_port, orthanc_dicom)
    config = write_config(tmp_path / "gazex.yaml", settings)
    database = f"sqlite:///{tmp_path / 'gazex' / 'gazex.db'}"
    orthanc = start_orthanc(
        orthanc_binary,
        tmp_path / "orthanc",
        config_for_test(orthanc_http, orthanc_dicom),
        {
            "ORTHANC_AET": ORTHANC_AET,
            "GAZEX_AET": GATEWAY_AET,
            "GAZEX_HOST": "127.0.0.1",
            "GAZEX_PORT": str(gateway_port),
        },
    )
    serve = None
    try:
        serve = start_serve(config, gateway_port, tmp_path / "serve.log")

        def received(study_uid: str) -> set[str]:
            rows = index_rows(
                database,
                "SELECT i.sop_instance_uid FROM instances i JOIN series s ON i.series_pk = s.id "
                "JOIN studies t ON s.study_pk = t.id WHERE t.study_instance_uid = :uid",
                uid=study_uid,
            )
            return {row[0] for row in rows}

        # 1-2. the chest CR goes into Orthanc over DICOM; Orthanc routes the stable study to the gateway
        _storescu(storescu, orthanc.dicom_port, chest_cr_path)
        chest_study = orthanc.study_id(str(chest.StudyInstanceUID))
        orthanc.wait_for_log(f'study {chest.StudyInstanceUID}: sending 1 instance(s) to "gazex"', 60)

        # 3. the gateway's SR, SEG and GSPS arrive back in the same study, sent by the gateway's AE
        def results() -> dict[str, list[dict[str, Any]]] | None:
            series = _series_by_modality(orthanc, chest_study)
            return series if set(RESULT_SOP_CLASSES) <= set(series) else None

        series = wait_until(results, 120, "the gateway's SR, SEG and GSPS in Orthanc's study")
        assert set(series) == {"CR", *RESULT_SOP_CLASSES}
        for modality, sop_class in RESULT_SOP_CLASSES.items():
            [result_series] = series[modality]
            [instance] = result_series["Instances"]
            tags = orthanc.get(f"/instances/{instance}/simplified-tags")
            assert tags["SOPClassUID"] == sop_class
            assert tags["StudyInstanceUID"] == chest.StudyInstanceUID
            assert orthanc.get(f"/instances/{instance}/metadata?expand")["RemoteAET"] == GATEWAY_AET
        # the results made the study stable again; they did not travel back to the gateway
        orthanc.wait_for_log(f"study {chest.StudyInstanceUID}: nothing new (1 instance(s) sent before)", 60)
        assert received(str(chest.StudyInstanceUID)) == {str(chest.SOPInstanceUID)}

        # 4. a non-chest study: Orthanc does not route it ...
        hand = _variant(chest, tmp_path / "hand.dcm", new_study=True, BodyPartExamined="HAND")
        lateral_only = _variant(chest, tmp_path / "lateral.dcm", new_study=True, BodyPartExamined="", ViewPosition="LL")
        _storescu(storescu, orthanc.dicom_port, tmp_path / "hand.dcm", tmp_path / "lateral.dcm")
        for study_uid in (str(hand.StudyInstanceUID), str(lateral_only.StudyInstanceUID)):
            orthanc.wait_for_log(f"study {study_uid} not routed: no CR/DX chest image", 60)
        assert received(str(hand.StudyInstanceUID)) == set()
        # ... and sent by hand (an operator forwarding it), the gateway records it as not
        # routed, with the reason, and sends nothing back
        hand_study = orthanc.study_id(str(hand.StudyInstanceUID))
        orthanc.post("/modalities/gazex/store", {"Resources": [hand_study], "Synchronous": True})
        engine = create_database_engine(database, create_directory=False)
        try:

            def hand_state() -> status.StudyRow | None:
                rows = status.studies(engine, limit=5, study_instance_uid=str(hand.StudyInstanceUID))
                return rows[0] if rows and rows[0].state == "not routed" else None

            decision = wait_until(hand_state, 60, "the gateway to record the hand study as not routed")
        finally:
            engine.dispose()
        assert "not routed" in decision.detail and decision.job_id is None
        assert set(_series_by_modality(orthanc, hand_study)) == {"CR"}

        # a late image of the chest study (a frontal DX without body part) goes alone: the first is not resent
        late = _variant(chest, tmp_path / "late.dcm", new_study=False, BodyPartExamined="", ViewPosition="AP")
        _storescu(storescu, orthanc.dicom_port, tmp_path / "late.dcm")
        orthanc.wait_for_log(f'study {chest.StudyInstanceUID}: sending 1 instance(s) to "gazex" (1 sent before)', 60)
        wait_until(lambda: str(late.SOPInstanceUID) in received(str(chest.StudyInstanceUID)), 60, "the late image")
        assert received(str(chest.StudyInstanceUID)) == {str(chest.SOPInstanceUID), str(late.SOPInstanceUID)}
    finally:
        if serve is not None:
            assert serve.terminate() == 0
        orthanc.stop()
    log = serve.log() if serve is not None else ""
    assert "Traceback" not in log, log
