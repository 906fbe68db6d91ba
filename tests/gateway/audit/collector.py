"""A syslog collector for the tests: TLS (RFC 5425) or TCP (RFC 6587) on loopback, octet-counted frames.

Certificates come from the ``openssl`` command line (the ``cryptography`` package is not a
dependency): a CA, a collector certificate for 127.0.0.1/localhost signed by it, and a client
certificate for mutual TLS.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import require_tool


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting only it must fail verification


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([str(require_tool("openssl")), *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN=GazeX test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory,
        )  # fmt: skip
    for name, extensions in (
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        (directory / f"{name}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            f"authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n{extensions}\n"
        )
        _openssl(
            "req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory
        )
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=directory,
        )  # fmt: skip
    return Certificates(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )


class Collector:
    """Accepts connections on 127.0.0.1 and keeps every frame received; ``close()`` stops it."""

    def __init__(self, port: int = 0, *, context: ssl.SSLContext | None = None) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self.listener.getsockname()[1]
        self.frames: list[bytes] = []
        self.peer_certificates: list[Any] = []
        self.handshake_failures = 0
        self.received = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            stream = self.context.wrap_socket(raw, server_side=True) if self.context else raw
        except (OSError, ssl.SSLError):
            raw.close()
            with self.received:
                self.handshake_failures += 1
                self.received.notify_all()
            return
        self._connections.append(stream)
        if isinstance(stream, ssl.SSLSocket):
            self.peer_certificates.append(stream.getpeercert())
        with stream:
            buffer = b""
            while True:
                try:
                    chunk = stream.recv(65536)
                except (OSError, ssl.SSLError):
                    return
                if not chunk:
                    return
                buffer += chunk
                while b" " in buffer:
                    length_text, _, rest = buffer.partition(b" ")
                    assert length_text.isdigit(), buffer[:40]
                    length = int(length_text)
                    if len(rest) < length:
                        break
                    with self.received:
                        self.frames.append(rest[:length])
                        self.received.notify_all()
                    buffer = rest[length:]

    def wait_for(self, count: int, timeout: float = 60.0) -> list[bytes]:
        """The frames, once at least ``count`` arrived (a safety limit against a hang, not a speed check)."""
        with self.received:
            self.received.wait_for(lambda: len(self.frames) >= count, timeout)
            return list(self.frames)

    def wait_for_handshake_failures(self, count: int, timeout: float = 60.0) -> int:
        with self.received:
            self.received.wait_for(lambda: self.handshake_failures >= count, timeout)
            return self.handshake_failures

    def close(self) -> None:
        self.listener.close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        for thread in self._threads:
            thread.join(5)


def server_context(certificates: Certificates, *, require_client: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certificates.server_cert), str(certificates.server_key))
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(certificates.ca))
    return context
