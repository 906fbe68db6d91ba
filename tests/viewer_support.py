"""The OHIF viewer for the real-viewer test: its prebuilt ``dist/`` served from one loopback origin.

Orthanc's DICOMweb plugin sends no CORS headers, so the viewer and DICOMweb must share an
origin: :class:`ViewerServer` serves OHIF's files (any other path gets ``index.html``, as the
single-page app expects), answers ``/app-config.js`` with a configuration whose only data
source is this origin's ``/dicom-web``, and forwards ``/dicom-web/...`` to Orthanc with the
test's credentials.  Everything listens on 127.0.0.1.

What ``scripts/install-viewer.sh`` installs lives in ``tools/viewer/``: OHIF's ``dist/`` and
puppeteer-core, which drives Debian's chromium (``tools/viewer/ohif-check.mjs``).
"""

from __future__ import annotations

import base64
import json
import mimetypes
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
VIEWER_TOOLS = REPO_ROOT / "tools" / "viewer"
OHIF_VERSION = "3.13.2"
OHIF_DIST = VIEWER_TOOLS / f"ohif-{OHIF_VERSION}" / "dist"
VIEWER_SCRIPT = VIEWER_TOOLS / "ohif-check.mjs"
PUPPETEER = VIEWER_TOOLS / "node_modules" / "puppeteer-core" / "package.json"
DICOMWEB_PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))

#: Forwarded from the browser to Orthanc and back; everything else is dropped.
_REQUEST_HEADERS = ("Accept", "Content-Type", "Range")
_RESPONSE_HEADERS = ("Content-Type", "Content-Length", "Content-Range", "Content-Disposition", "ETag")


def dicomweb_plugin() -> Path | None:
    """Orthanc's DICOMweb plugin (Debian ``orthanc-dicomweb``), or None."""
    for folder in DICOMWEB_PLUGIN_DIRS:
        found = sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def orthanc_dicomweb_settings(plugin: Path) -> dict[str, Any]:
    """The Orthanc settings that load the DICOMweb plugin at ``/dicom-web/``."""
    return {
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado", "Ssl": False},
    }


def app_config() -> str:
    """OHIF's ``window.config``: one DICOMweb data source, this origin's /dicom-web (Orthanc)."""
    config = {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"},
        "defaultDataSourceName": "orthanc",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "orthanc",
                "configuration": {
                    "friendlyName": "Orthanc (test)",
                    "name": "orthanc",
                    "wadoUriRoot": "/wado",
                    "qidoRoot": "/dicom-web",
                    "wadoRoot": "/dicom-web",
                    "qidoSupportsIncludeField": False,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "wadors",
                    "enableStudyLazyLoad": True,
                    "supportsFuzzyMatching": False,
                    "supportsWildcard": True,
                    "staticWado": False,
                    "singlepart": "bulkdata,video",
                    "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
                    "omitQuotationForMultipartRequest": True,
                },
            }
        ],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"


class ViewerServer:
    """OHIF's dist and a /dicom-web proxy to Orthanc on one loopback port, in a background thread."""

    def __init__(self, dist: Path, orthanc_http_port: int, username: str, password: str) -> None:
        self.dist = dist.resolve()
        self.orthanc = f"http://127.0.0.1:{orthanc_http_port}"
        self.authorization = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.config = app_config().encode()
        self.errors: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ohif-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ViewerServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the browser makes hundreds of requests

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.startswith(("/dicom-web/", "/wado")):
                    self._proxy()
                elif path == "/app-config.js":
                    self._send(200, "application/javascript", server.config)
                else:
                    self._static(path)

            def _send(self, status: int, content_type: str, body: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _static(self, path: str) -> None:
                candidate = (server.dist / path.lstrip("/")).resolve()
                if not candidate.is_relative_to(server.dist) or not candidate.is_file():
                    candidate = server.dist / "index.html"  # the single-page app's own routes
                content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
                if candidate.suffix == ".wasm":
                    content_type = "application/wasm"
                self._send(200, content_type, candidate.read_bytes())

            def _proxy(self) -> None:
                request = urllib.request.Request(server.orthanc + self.path, method="GET")  # noqa: S310 - http to loopback Orthanc
                for name in _REQUEST_HEADERS:
                    if self.headers.get(name):
                        request.add_header(name, self.headers[name])
                request.add_header("Authorization", server.authorization)
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback Orthanc
                        status, headers, body = response.status, response.headers, response.read()
                except urllib.error.HTTPError as error:
                    status, headers, body = error.code, error.headers, error.read()
                    server.errors.append(f"{status} from Orthanc for {self.path}")
                kept = {name: headers[name] for name in _RESPONSE_HEADERS[2:] if headers.get(name)}
                self._send(status, headers.get("Content-Type", "application/octet-stream"), body, kept)

        return Handler
