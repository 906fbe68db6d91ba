"""The HTTP server thread of ``gazex serve``: uvicorn on a socket bound before the thread starts."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.config.operations import HttpSettings

LOGGER = logging.getLogger(__name__)


class HttpServerError(Exception):
    """The HTTP server cannot start: says why and what to do."""


#: The key of the verified client certificate (``ssl.SSLSocket.getpeercert()``) in request.state.
CLIENT_CERTIFICATE = "client_certificate"


class ClientCertificateH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that puts the connection's verified client certificate into the
    state of each of its requests (uvicorn gives the application no other way to see it)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert() if ssl_object is not None else None
        if certificate:
            self.app_state = {**self.app_state, CLIENT_CERTIFICATE: certificate}


def certificate_common_name(certificate: dict[str, Any]) -> str | None:
    """The subject's commonName of a ``getpeercert()`` dictionary."""
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class HttpServer:
    """Bind with :meth:`start` (errors raised here, in the caller's thread), end with :meth:`stop`."""

    def __init__(self, settings: HttpSettings, app: FastAPI) -> None:
        self.settings = settings
        self.app = app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.settings.tls.enabled else "http"

    def start(self) -> tuple[str, int]:
        settings = self.settings
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.host, settings.port))
        except OSError as exc:
            sock.close()
            raise HttpServerError(
                f"cannot listen for HTTP on {settings.host}:{settings.port}: {exc.strerror}; "
                "choose another http.port or set http.enabled: false"
            ) from None
        sock.listen(128)
        sock.set_inheritable(True)
        client_ca = settings.tls.client_ca_certificates
        config = uvicorn.Config(
            self.app,
            # with client CAs: ask for a certificate (optional; a presented one must verify) and hand the
            # verified certificate to the app as request.state.client_certificate
            http=ClientCertificateH11Protocol if client_ca is not None else "auto",
            ssl_cert_reqs=ssl.CERT_OPTIONAL if client_ca is not None else ssl.CERT_NONE,
            ssl_ca_certs=str(client_ca) if client_ca is not None else None,
            log_config=None,  # our logging; uvicorn's access log would print query strings
            access_log=False,
            server_header=False,
            ssl_certfile=str(settings.tls.certificate) if settings.tls.certificate else None,
            ssl_keyfile=str(settings.tls.private_key) if settings.tls.private_key else None,
            timeout_keep_alive=15,
            limit_concurrency=200,
            lifespan="off",
        )
        try:
            server = uvicorn.Server(config)
            config.load()  # reads the TLS files now, so a bad certificate stops start-up with a message
        except (OSError, ValueError) as exc:
            sock.close()
            raise HttpServerError(f"the HTTPS certificate or key cannot be used: {exc}") from None
        self._server = server
        self._socket = sock
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise HttpServerError("the HTTP server did not start; see the log above")
        host, port = sock.getsockname()[:2]
        return str(host), int(port)

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
