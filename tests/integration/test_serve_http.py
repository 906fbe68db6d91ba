"""``gazex serve`` with its HTTP server: probes, an account made by ``gazex users``, HTTPS, and refusals."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ingest_support import (
    REPO_ROOT,
    Certificates,
    ServeProcess,
    clean_environment,
    make_pki,
    run_gazex,
    serve_config,
    start_serve,
    write_config,
)

pytestmark = pytest.mark.integration

PASSWORD = "an integration password"  # noqa: S105 - a test account's password


@pytest.fixture
def started() -> Iterator[list[ServeProcess]]:
    processes: list[ServeProcess] = []
    yield processes
    for process in processes:
        process.kill()


def wait_ready(base: str, timeout: float = 90, **client: Any) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{base}/readyz", timeout=5, **client)
            if last.status_code == 200:
                return last
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not ready in {timeout} s: {last.text if last else 'no answer'}")


def add_user(config: Path, name: str, role: str) -> str:
    """``gazex users add`` (password on stdin), then ``gazex users token``: the token."""
    added = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "users", "add", name, "--role", role, "--password-stdin", "--config",
         str(config)],
        input=PASSWORD + "\n", capture_output=True, text=True, env=clean_environment(), cwd=REPO_ROOT, timeout=120,
        check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert f"user {name} added as {role}" in added.stdout
    token = run_gazex("users", "token", name, "--name", "tests", "--config", str(config))
    assert token.returncode == 0, token.stderr
    return token.stdout.strip()


def test_serve_answers_the_probes_and_the_api_with_a_token_from_the_cli(
    tmp_path: Path, free_port: Callable[[], int], started: list[ServeProcess]
) -> None:
    port, http_port = free_port(), free_port()
    config = write_config(
        tmp_path / "gazex.yaml",
        serve_config(tmp_path / "data", port, model={"path": "fake"}, http={"enabled": True, "port": http_port}),
    )
    node = start_serve(config, port, tmp_path / "serve.log")
    started.append(node)
    base = f"http://127.0.0.1:{http_port}"
    ready = wait_ready(base).json()
    assert {check["name"] for check in ready["checks"]} == {"database", "spool", "outbox", "dicom", "model"}
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert f"HTTP API and console on http://127.0.0.1:{http_port}" in node.log()
    assert "no console or API account exists yet" in node.log()
    assert httpx.get(f"{base}/api/v1/auth/me").status_code == 401
    token = add_user(config, "admin1", "admin")
    me = httpx.get(f"{base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json() == {"username": "admin1", "role": "admin", "method": "token"}
    listed = run_gazex("users", "list", "--config", str(config))
    assert "admin1" in listed.stdout and "admin" in listed.stdout
    assert PASSWORD not in node.log() and token not in node.log()
    assert node.terminate() == 0


def test_serve_speaks_https_with_its_certificate(
    tmp_path: Path, free_port: Callable[[], int], started: list[ServeProcess]
) -> None:
    from tests.conftest import require_tool

    pki: Certificates = make_pki(require_tool("openssl"), tmp_path / "pki")
    port, http_port = free_port(), free_port()
    http = {
        "enabled": True,
        "port": http_port,
        "host": "127.0.0.1",
        "tls": {"certificate": str(pki.server_cert), "private_key": str(pki.server_key)},
    }
    config = write_config(
        tmp_path / "gazex.yaml", serve_config(tmp_path / "data", port, model={"path": "fake"}, http=http)
    )
    started.append(start_serve(config, port, tmp_path / "serve.log"))
    context = ssl.create_default_context(cafile=str(pki.ca))  # the certificate names 127.0.0.1 too
    base = f"https://127.0.0.1:{http_port}"
    assert wait_ready(base, verify=context).status_code == 200
    token = add_user(config, "admin1", "admin")
    login = httpx.post(f"{base}/api/v1/auth/login", json={"username": "admin1", "password": PASSWORD}, verify=context)
    assert login.status_code == 200 and "Secure" in login.headers["set-cookie"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", verify=True)  # not a publicly trusted certificate
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"http://127.0.0.1:{http_port}/healthz", headers={"Authorization": f"Bearer {token}"})


def test_serve_refuses_plain_http_beyond_loopback_and_a_busy_port(tmp_path: Path, free_port: Callable[[], int]) -> None:
    port = free_port()
    exposed = write_config(
        tmp_path / "exposed.yaml",
        serve_config(tmp_path / "data", port, model={"path": "fake"}, http={"enabled": True, "host": "0.0.0.0"}),
    )
    refused = run_gazex("serve", "--config", str(exposed))
    assert refused.returncode == 2
    assert "exposes the console beyond loopback without TLS" in refused.stderr
    assert "http.allow_insecure_remote: true" in refused.stderr
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        config = write_config(
            tmp_path / "busy.yaml",
            serve_config(tmp_path / "data", port, model={"path": "fake"}, http={"enabled": True, "port": taken}),
        )
        result = run_gazex("serve", "--config", str(config))
    assert result.returncode == 2
    assert f"cannot listen for HTTP on 127.0.0.1:{taken}" in result.stderr and "http.port" in result.stderr


def test_metrics_and_the_audit_file_after_a_known_run(
    tmp_path: Path,
    free_port: Callable[[], int],
    started: list[ServeProcess],
    dicom_tool: Callable[[str], Path],
    chest_cr_path: Path,
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    port, http_port = free_port(), free_port()
    config = write_config(
        tmp_path / "gazex.yaml",
        serve_config(
            tmp_path / "data",
            port,
            model={"path": "fake"},
            completion={"quiet_seconds": 1, "check_interval_seconds": 0.5},
            http={"enabled": True, "port": http_port},
        ),
    )
    node = start_serve(config, port, tmp_path / "serve.log")
    started.append(node)
    base = f"http://127.0.0.1:{http_port}"
    wait_ready(base)
    token = add_user(config, "prometheus", "viewer")
    storescu = str(dicom_tool("storescu"))
    sent = subprocess.run([storescu, "-aec", "GAZEX", "127.0.0.1", str(port), str(chest_cr_path)], check=False)
    assert sent.returncode == 0
    refused = subprocess.run([storescu, "-aec", "NOT-US", "127.0.0.1", str(port), str(chest_cr_path)], check=False)
    assert refused.returncode != 0
    assert httpx.get(f"{base}/metrics").status_code == 401

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    deadline = time.monotonic() + 90
    samples = scrape()
    while samples.get(("gazex_jobs_total", (("outcome", "done"),))) != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
        samples = scrape()
    assert samples[("gazex_jobs_total", (("outcome", "done"),))] == 1
    assert samples[("gazex_instances_received_total", ())] == 1
    # the data set as received: the file less its preamble and File Meta Information
    assert (
        chest_cr_path.stat().st_size - 1024 < samples[("gazex_received_bytes_total", ())] < chest_cr_path.stat().st_size
    )
    assert samples[("gazex_studies_completed_total", ())] == 1
    assert samples[("gazex_associations_total", (("outcome", "accepted"), ("reason", "none")))] == 1
    assert samples[("gazex_associations_total", (("outcome", "rejected"), ("reason", "called_ae_title")))] == 1
    audit = (tmp_path / "data" / "audit" / "audit.log").read_text(encoding="utf-8").splitlines()
    assert oct((tmp_path / "data" / "audit" / "audit.log").stat().st_mode & 0o777) == "0o600"
    assert any("110100" in line for line in audit)  # Application Activity: started
    assert sum("110114" in line for line in audit) == 0  # nobody logged in
    assert any('csd-code="110104"' in line or "110104" in line for line in audit)  # instances transferred
    assert node.terminate() == 0
