"""The shipped Orthanc configuration and routing script (``deploy/orthanc/``) in a real Orthanc.

Orthanc starts in about a second; each test starts its own on free loopback ports with a
temporary storage directory.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.orthanc_support import (
    ADMIN_PASSWORD,
    OrthancExitedError,
    config_for_test,
    shipped_config,
    start_orthanc,
)

pytestmark = pytest.mark.integration


def _error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith(("E", "F"))]


def test_shipped_configuration_starts_and_loads_the_routing_script(
    tmp_path: Path, free_port: Callable[[], int], dicom_tool: Callable[[str], Path]
) -> None:
    orthanc = dicom_tool("Orthanc")
    config = config_for_test(free_port(), free_port())
    env = {"ORTHANC_AET": "PACSTEST", "GAZEX_AET": "GWTEST", "GAZEX_HOST": "127.0.0.1", "GAZEX_PORT": "11999"}
    server = start_orthanc(orthanc, tmp_path, config, env)
    try:
        assert server.aet == "PACSTEST"
        gateway = server.get("/modalities/gazex/configuration")
        assert (gateway["AET"], gateway["Host"], gateway["Port"]) == ("GWTEST", "127.0.0.1", 11999)
        assert gateway["AllowStore"] and gateway["AllowEcho"] and gateway["AllowFind"]
        assert not gateway["AllowGet"]
        modality = server.get("/modalities/modality/configuration")
        assert (modality["AET"], modality["AllowStore"], modality["AllowFind"]) == ("MODALITY", True, False)
        # the REST API wants the password
        anonymous = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/system")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(anonymous, timeout=10)  # noqa: S310
        assert refused.value.code == 401
        wrong = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/system")
        wrong.add_header(
            "Authorization", "Basic " + base64.b64encode(b"admin:" + b"x" + ADMIN_PASSWORD.encode()).decode()
        )
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(wrong, timeout=10)  # noqa: S310
    finally:
        assert server.stop() == 0
    log = server.log()
    assert 'GazeX routing: loaded; stable CR/DX chest studies go to "gazex" (GWTEST)' in log
    assert _error_lines(log) == []


def _without(config: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in config.items() if name != key}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: _without(c, "GazexRouting"), 'the "GazexRouting" section is missing'),
        (
            lambda c: {**c, "GazexRouting": {**c["GazexRouting"], "Destination": "archive"}},
            'GazexRouting.Destination is "archive", but DicomModalities has no entry "archive"',
        ),
        (
            lambda c: {**c, "GazexRouting": {**c["GazexRouting"], "Modalities": []}},
            "GazexRouting.Modalities must not be empty",
        ),
        (lambda c: _without(c, "UserMetadata"), 'UserMetadata must declare "GazexRouted"'),
    ],
    ids=["no-section", "unknown-destination", "no-modalities", "no-metadata"],
)
def test_a_broken_routing_configuration_stops_orthanc(
    tmp_path: Path,
    free_port: Callable[[], int],
    dicom_tool: Callable[[str], Path],
    change: Callable[[dict[str, Any]], dict[str, Any]],
    message: str,
) -> None:
    orthanc = dicom_tool("Orthanc")
    config = change(config_for_test(free_port(), free_port()))
    with pytest.raises(OrthancExitedError) as exited:
        server = start_orthanc(orthanc, tmp_path, config, {})
        server.stop()
    assert exited.value.status != 0
    assert "GazeX routing: configuration error: " + message in exited.value.log


def test_shipped_configuration_is_strict_json_with_the_documented_placeholders() -> None:
    """Strict JSON (no comments), so any tool can read it; every placeholder is one docs/pacs-routing.md lists."""
    text = (Path(__file__).resolve().parents[2] / "deploy" / "orthanc" / "orthanc.json").read_text(encoding="utf-8")
    json.loads(text)
    import re

    placeholders = set(re.findall(r"\$\{([A-Z_]+)(?::-[^}]*)?\}", text))
    assert placeholders == {
        "ORTHANC_NAME",
        "ORTHANC_STORAGE_DIR",
        "ORTHANC_ADMIN_PASSWORD",
        "ORTHANC_AET",
        "GAZEX_AET",
        "GAZEX_HOST",
        "GAZEX_PORT",
        "MODALITY_AET",
        "MODALITY_HOST",
        "MODALITY_PORT",
    }
    page = (Path(__file__).resolve().parents[2] / "docs" / "pacs-routing.md").read_text(encoding="utf-8")
    for name in placeholders:
        assert f"`{name}`" in page, f"docs/pacs-routing.md does not document the Orthanc placeholder {name}"
    assert shipped_config()["GazexRouting"]["Destination"] in shipped_config()["DicomModalities"]
