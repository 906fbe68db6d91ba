"""Helpers for the ingest tests: settings, a node in this process, ``gazex serve`` as a process,
a pynetdicom SCU, small test instances and reading the index back."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import ComputedRadiographyImageStorage, Verification  # type: ignore[attr-defined]
from sqlalchemy import create_engine, text

from benchmarks._net import wait_for_port
from gateway.config import Settings, load_settings
from gateway.runtime import GatewayRuntime

REPO_ROOT = Path(__file__).resolve().parent.parent


def node_settings(data_dir: Path, port: int, **sections: dict[str, Any]) -> Settings:
    """Settings for a node on 127.0.0.1:``port`` keeping its data in ``data_dir``; ``sections`` override."""
    values: dict[str, Any] = {
        "dicom": {"host": "127.0.0.1", "port": port, "shutdown_grace_seconds": 2},
        "storage": {"data_dir": str(data_dir), "min_free_disk": 0},
    }
    for section, overrides in sections.items():
        values[section] = {**values.get(section, {}), **overrides}
    return load_settings(overrides=values, environ={})


@contextlib.contextmanager
def running_node(settings: Settings) -> Iterator[GatewayRuntime]:
    """A gateway runtime serving in this process; stopped and closed afterwards."""
    runtime = GatewayRuntime(settings)
    runtime.open()
    try:
        runtime.start()
        yield runtime
    finally:
        runtime.stop(grace=0)
        runtime.close()


def small_cr(source: Dataset, *, rows: int = 64, columns: int = 64, **changes: Any) -> Dataset:
    """The chest CR cut to ``rows`` x ``columns`` pixels (fast to send), with new UIDs unless given."""
    dataset = copy.deepcopy(source)
    pixels = dataset.pixel_array[:rows, :columns].copy()
    dataset.Rows, dataset.Columns = rows, columns
    dataset.PixelData = pixels.tobytes()
    dataset.SOPInstanceUID = generate_uid()
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dataset


def write_dataset(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a DICOM file after its File Meta Information (the data set as sent)."""
    with path.open("rb") as fp:
        pydicom.filereader.read_preamble(fp, False)
        pydicom.filereader._read_file_meta_info(fp)
        return fp.read()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def raw_file_sending() -> Iterator[None]:
    """pynetdicom sends a file's data set bytes as they are on disk (no decode, no re-encode)."""
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        yield
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


def scu(
    calling_ae_title: str = "TESTSCU",
    sop_classes: Sequence[str] = (ComputedRadiographyImageStorage,),
    transfer_syntaxes: Sequence[str] = (ExplicitVRLittleEndian,),
) -> AE:
    ae = AE(ae_title=calling_ae_title)
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class, list(transfer_syntaxes))
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


def store_all(
    address: tuple[str, int],
    items: Sequence[Dataset | Path],
    *,
    called_ae_title: str = "GAZEX",
    ae: AE | None = None,
) -> list[int]:
    """Send each item over one association; the status of each C-STORE (or -1 when none came back)."""
    ae = ae or scu()
    assoc = ae.associate(address[0], address[1], ae_title=called_ae_title)
    assert assoc.is_established, "the node did not accept the association"
    statuses = []
    try:
        for item in items:
            status = assoc.send_c_store(item)
            statuses.append(int(status.Status) if status is not None and "Status" in status else -1)
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def associate_expecting_rejection(ae: Any, host: str, port: int, ae_title: str, attempts: int = 3) -> Any:
    """A pynetdicom association request that the peer is expected to reject.

    pynetdicom's requestor can lose a race with the acceptor closing the connection right after
    its A-ASSOCIATE-RJ: the requestor then reports neither acceptance nor rejection (seen once in
    CI, while the node logged the rejection). Only in that case the request is made again; an accepted
    association is returned at once, so the caller's assertion fails on it.
    """
    assoc = None
    for _ in range(attempts):
        assoc = ae.associate(host, port, ae_title=ae_title)
        if assoc.is_rejected or assoc.is_established:
            return assoc
    return assoc


def rejection_of(assoc: Any) -> tuple[int, int, int]:
    """(result, source, reason) of an A-ASSOCIATE-RJ a pynetdicom requestor received."""
    primitive = assoc.acceptor.primitive
    assert primitive is not None, "no A-ASSOCIATE response was received"
    return int(primitive.result), int(primitive.result_source), int(primitive.diagnostic)


def index_rows(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql), params).all())
    finally:
        engine.dispose()


def stored_instances(settings: Settings) -> dict[str, Any]:
    """SOP Instance UID -> index row (file_path, file_size, content_sha256, ...)."""
    rows = index_rows(settings.database_url, "SELECT * FROM instances")
    return {row.sop_instance_uid: row for row in rows}


def partial_files(settings: Settings) -> list[Path]:
    incoming = settings.storage.spool_path / ".incoming"
    return sorted(incoming.iterdir()) if incoming.exists() else []


# -- gazex serve as a process ------------------------------------------------------------


def write_config(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path


def serve_config(data_dir: Path, port: int, **sections: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "dicom": {"host": "127.0.0.1", "port": port, "shutdown_grace_seconds": 5},
        "storage": {"data_dir": str(data_dir), "min_free_disk": "1MB"},
        "model": {"allow_demo": True},  # the default model is the bundled demo one; these tests are not about it
        "http": {"enabled": False},  # tests of the HTTP server turn it on, on a free port
    }
    for section, overrides in sections.items():
        values[section] = {**values.get(section, {}), **overrides}
    return values


def clean_environment() -> dict[str, str]:
    """This process's environment without GAZEX_<SECTION>__<KEY> or GAZEX_<SECTION> settings (tests pass their own)."""
    from gateway.config.loading import settings_variables

    settings = settings_variables(os.environ)
    return {key: value for key, value in os.environ.items() if key not in settings}


def run_gazex(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``gazex ARGS`` as a process from the repository root, in a clean environment; its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else clean_environment(),
        cwd=REPO_ROOT,
        check=False,
    )


@dataclass
class ServeProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def start_serve(
    config_path: Path,
    port: int,
    log_path: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ServeProcess:
    """``python -m gateway.cli serve --config FILE`` (the code under test); waits until it listens."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "--log-level", "INFO", "serve", "--config", str(config_path), *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env if env is not None else clean_environment(),
        cwd=cwd or REPO_ROOT,
    )
    log.close()
    serve = ServeProcess(process, port, log_path)
    try:
        wait_for_port(port, process)
        wait_for_log(serve, SERVE_READY)
    except BaseException:
        serve.kill()
        raise
    return serve


# logged by gazex serve once it has blocked SIGTERM/SIGINT and everything listens: a test may
# signal it from then on (a SIGTERM sent while it still imports ends it with -15, not 0)
SERVE_READY = "gazex serve ready on "


def wait_for_log(serve: ServeProcess, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in serve.log():
            return
        if serve.process.poll() is not None:
            raise RuntimeError(f"gazex serve exited with status {serve.process.returncode} before logging {text!r}")
        time.sleep(0.05)
    raise TimeoutError(f"gazex serve did not log {text!r} within {timeout} s")


def new_uid() -> UID:
    return generate_uid()


# -- TLS test certificates (openssl) -----------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """A throw-away CA with a server and a client certificate, all PEM."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # signed by another CA
    stranger_key: Path


def _openssl(openssl: Path, *args: str, cwd: Path) -> None:
    subprocess.run([str(openssl), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(openssl: Path, directory: Path) -> Certificates:
    """Generate the CA and leaf certificates with the openssl command line (EC P-256, fast)."""
    directory.mkdir(parents=True, exist_ok=True)
    run = lambda *args: _openssl(openssl, *args, cwd=directory)  # noqa: E731
    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", f"/CN=GazeX test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem")  # fmt: skip
    for leaf, ca in (("server", "ca"), ("client", "ca"), ("stranger", "other-ca")):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", f"/CN={leaf}.gazex.test", "-keyout", f"{leaf}.key", "-out", f"{leaf}.csr")  # fmt: skip
        # the server's certificate also names the loopback address, for HTTPS clients that check it
        extensions = directory / f"{leaf}.ext"
        names = f"DNS:{leaf}.gazex.test" + (",DNS:localhost,IP:127.0.0.1" if leaf == "server" else "")
        extensions.write_text(f"subjectAltName={names}\n", encoding="ascii")
        run("x509", "-req", "-in", f"{leaf}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{leaf}.ext", "-out", f"{leaf}.pem")  # fmt: skip
    return Certificates(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        stranger_cert=directory / "stranger.pem",
        stranger_key=directory / "stranger.key",
    )


def storescu_successes(output: str) -> list[str]:
    """SOP Instance UIDs that storescu (``-v``, with ``+II``) saw acknowledged with Success, in order."""
    successes: list[str] = []
    current: str | None = None
    for line in output.splitlines():
        text = line.strip().removeprefix("I:").strip()  # dcmtk's log level prefix
        if text.startswith("SOPInstanceUID="):
            current = text.split("=", 1)[1].strip()
        elif "Received Store Response (Success)" in text and current is not None:
            successes.append(current)
            current = None
    return successes
