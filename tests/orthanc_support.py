"""A real Orthanc for the tests, started from ``deploy/orthanc/`` on free loopback ports.

The test copy of the configuration differs from the shipped one only where a test must:
its two listening ports (Orthanc wants integers there, so they cannot come from the
environment), ``StableAge`` (seconds instead of a minute), the absolute path of the Lua
script, and HTTP access from loopback only.  Everything else, including the ``${VAR}``
placeholders, is the shipped file, filled in from the environment the test passes.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ingest_support import serve_config

REPO_ROOT = Path(__file__).resolve().parent.parent
ORTHANC_DIR = REPO_ROOT / "deploy" / "orthanc"
ORTHANC_CONFIG = ORTHANC_DIR / "orthanc.json"
ROUTING_SCRIPT = ORTHANC_DIR / "gazex-routing.lua"

ADMIN_PASSWORD = "test-password"  # noqa: S105 - a throw-away Orthanc on loopback


def shipped_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(ORTHANC_CONFIG.read_text(encoding="utf-8"))
    return config


def config_for_test(http_port: int, dicom_port: int, *, stable_age: int = 1, **changes: Any) -> dict[str, Any]:
    """The shipped configuration with the test's ports, a short StableAge and the script's absolute path."""
    config = shipped_config()
    config.update(
        HttpPort=http_port,
        DicomPort=dicom_port,
        StableAge=stable_age,
        RemoteAccessAllowed=False,
        LuaScripts=[str(ROUTING_SCRIPT)],
    )
    config.update(changes)
    return config


@dataclass
class OrthancProcess:
    process: subprocess.Popen[bytes]
    http_port: int
    dicom_port: int
    aet: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Poll the log until ``text`` appears in it; fail after ``timeout`` seconds."""
        wait_until(lambda: text in self.log(), timeout, f"Orthanc to log {text!r}")

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method)
        token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            payload = response.read()
        return json.loads(payload) if payload else None

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def raw(self, path: str) -> bytes:
        """The body of a GET as it is (e.g. ``/instances/{id}/file``)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", method="GET")
        token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return bytes(response.read())

    def post(self, path: str, body: Any) -> Any:
        """POST ``body``: a str is sent as it is (e.g. to /tools/lookup), anything else as JSON."""
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return self._request("POST", path, data)

    def study_id(self, study_instance_uid: str) -> str:
        """Orthanc's identifier of the study with this Study Instance UID."""
        found = self.post("/tools/lookup", study_instance_uid)
        [study] = [item["ID"] for item in found if item["Type"] == "Study"]
        return str(study)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=timeout)


def start_orthanc(
    orthanc: Path,
    workdir: Path,
    config: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    timeout: float = 60,
) -> OrthancProcess:
    """Start ``orthanc`` with ``config`` (written to ``workdir``) and wait until its REST API answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    log_path = workdir / "orthanc.log"
    environment = {
        "PATH": "/usr/bin:/bin",
        "ORTHANC_STORAGE_DIR": str(workdir / "storage"),
        "ORTHANC_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(orthanc), str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=workdir,
        )
    server = OrthancProcess(process, int(config["HttpPort"]), int(config["DicomPort"]), "", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OrthancExitedError(process.returncode, server.log())
        try:
            system = server.get("/system")
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
            continue
        server.aet = str(system["DicomAet"])
        return server
    server.stop()
    raise TimeoutError(f"Orthanc did not answer on 127.0.0.1:{server.http_port} within {timeout} s:\n{server.log()}")


class OrthancExitedError(RuntimeError):
    """Orthanc stopped before its REST API answered (e.g. a configuration or Lua error)."""

    def __init__(self, status: int, log: str) -> None:
        super().__init__(f"Orthanc exited with status {status} before it answered:\n{log}")
        self.status = status
        self.log = log


#: AE titles of the round trips: Orthanc as the PACS, and the gateway beside it.
ORTHANC_AET = "PACSTEST"
GATEWAY_AET = "GAZEXTEST"


def gateway_beside_orthanc(
    directory: Path, gateway_port: int, orthanc_dicom_port: int, **sections: Any
) -> dict[str, Any]:
    """``gazex serve``'s configuration (FakeEngine) for a gateway that Orthanc routes to and that sends back to it.

    ``sections`` are further configuration sections (e.g. ``routing``).
    """
    return serve_config(
        directory,
        gateway_port,
        dicom={
            "ae_titles": [GATEWAY_AET],
            "allowed_callers": [{"ae_title": ORTHANC_AET, "host": "127.0.0.1"}],
            # Orthanc keeps its last association open a few seconds: do not wait for it at the end
            "shutdown_grace_seconds": 1,
        },
        model={"path": "fake"},
        completion={"quiet_seconds": 1, "check_interval_seconds": 0.5},
        destinations={"pacs": {"ae_title": ORTHANC_AET, "host": "127.0.0.1", "port": orthanc_dicom_port}},
        **sections,
    )


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
