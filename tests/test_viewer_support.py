"""The real-viewer test's web server: OHIF's files, its configuration, and DICOMweb forwarded to
Orthanc with credentials, all from one loopback origin (here with a stand-in dist and a small
HTTP server in Orthanc's place)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.viewer_support import ViewerServer, app_config, orthanc_dicomweb_settings


class _Orthanc(BaseHTTPRequestHandler):
    """Answers every GET with what it was asked, as JSON; /missing with 404."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps(
            {
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "accept": self.headers.get("Accept"),
            }
        ).encode()
        self.send_response(404 if self.path.endswith("/missing") else 200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def orthanc() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Orthanc)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text("<html>OHIF</html>", encoding="utf-8")
    (folder / "app.bundle.js").write_text("console.log(1)", encoding="utf-8")
    (folder / "codec.wasm").write_bytes(b"\0asm")
    (tmp_path / "secret.txt").write_text("not served", encoding="utf-8")
    return folder


def _get(url: str, **headers: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http to a loopback test server
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback test server
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def test_files_config_and_single_page_routes(dist: Path, orthanc: int) -> None:
    with ViewerServer(dist, orthanc, "admin", "pw") as viewer:
        assert _get(f"{viewer.url}/app.bundle.js")[2] == b"console.log(1)"
        assert _get(f"{viewer.url}/codec.wasm")[1] == "application/wasm"
        # the app's own routes and anything outside dist get index.html
        for path in ("/viewer?StudyInstanceUIDs=1.2.3", "/", "/../secret.txt", "/%2e%2e/secret.txt"):
            status, content_type, body = _get(viewer.url + path)
            assert (status, content_type, body) == (200, "text/html", b"<html>OHIF</html>"), path
        status, content_type, body = _get(f"{viewer.url}/app-config.js")
        assert (status, content_type) == (200, "application/javascript")
        assert body.decode() == app_config()


def test_dicomweb_goes_to_orthanc_with_credentials(dist: Path, orthanc: int) -> None:
    with ViewerServer(dist, orthanc, "admin", "pw") as viewer:
        status, content_type, body = _get(
            f"{viewer.url}/dicom-web/studies?limit=1", Accept="application/dicom+json", Authorization="Basic x"
        )
        assert (status, content_type) == (200, "application/dicom+json")
        seen = json.loads(body)
        assert seen["path"] == "/dicom-web/studies?limit=1"
        assert seen["authorization"] == "Basic YWRtaW46cHc="  # admin:pw, not the browser's
        assert seen["accept"] == "application/dicom+json"
        assert viewer.errors == []
        status, _, _ = _get(f"{viewer.url}/dicom-web/studies/missing")
        assert status == 404
        assert viewer.errors == ["404 from Orthanc for /dicom-web/studies/missing"]


def test_config_reads_dicomweb_from_this_origin() -> None:
    text = app_config()
    assert text.startswith("window.config = ") and text.endswith(";\n")
    config = json.loads(text[len("window.config = ") : -2])
    [source] = config["dataSources"]
    assert source["configuration"]["qidoRoot"] == source["configuration"]["wadoRoot"] == "/dicom-web"
    assert config["defaultDataSourceName"] == source["sourceName"]
    settings = orthanc_dicomweb_settings(Path("/plugins/libOrthancDicomWeb.so"))
    assert settings["Plugins"] == ["/plugins/libOrthancDicomWeb.so"]
    assert settings["DicomWeb"]["Root"] == "/dicom-web/"
