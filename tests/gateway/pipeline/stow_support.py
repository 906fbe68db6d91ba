"""A small STOW-RS server on loopback (http.server) that answers exactly as a test says, and an
OAuth 2 token endpoint beside it: for the responses Orthanc cannot be made to give (202 with a
Failed SOP Sequence, 500 with Retry-After) and for the client credentials grant."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pydicom


@dataclass
class StowRequest:
    path: str
    headers: dict[str, str]
    sop_instance_uids: list[str]


#: (SOP Instance UIDs of the request) -> (HTTP status, headers, body)
Responder = Callable[[list[str]], tuple[int, dict[str, str], bytes]]


def referenced(uid: str, warning: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"00081155": {"vr": "UI", "Value": [uid]}}
    if warning is not None:
        item["00081196"] = {"vr": "US", "Value": [warning]}
    return item


def failed(uid: str, reason: int) -> dict[str, Any]:
    return {"00081155": {"vr": "UI", "Value": [uid]}, "00081197": {"vr": "US", "Value": [reason]}}


def dicom_json(status: int, referenced_items: list[Any], failed_items: list[Any]) -> tuple[int, dict[str, str], bytes]:
    document: dict[str, Any] = {}
    if referenced_items:
        document["00081199"] = {"vr": "SQ", "Value": referenced_items}
    if failed_items:
        document["00081198"] = {"vr": "SQ", "Value": failed_items}
    return status, {"Content-Type": "application/dicom+json"}, json.dumps(document).encode()


def all_stored(uids: list[str]) -> tuple[int, dict[str, str], bytes]:
    return dicom_json(200, [referenced(uid) for uid in uids], [])


def parts_of(content_type: str, body: bytes) -> list[bytes]:
    """The parts of a multipart/related body, read with the standard library's MIME parser."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    assert message.get_content_type() == "multipart/related", message.get_content_type()
    assert message.get_param("type") == "application/dicom"
    parts = []
    for part in message.iter_parts():
        assert part.get_content_type() == "application/dicom"
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append(payload)
    return parts


@dataclass
class StowServer:
    """``with StowServer(respond) as server:`` POST ``server.base_url + "/studies"``; ``POST /token`` for OAuth 2."""

    respond: Responder = all_stored
    bearer: str | None = None  # when set, STOW requests must carry this bearer token (else 401)
    client: tuple[str, str] | None = None  # OAuth 2 client id and secret the token endpoint accepts
    expires_in: int = 3600
    tls: ssl.SSLContext | None = None  # a server context: HTTPS
    requests: list[StowRequest] = field(default_factory=list)
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    tokens_issued: int = 0

    def __enter__(self) -> StowServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/token":
                    self._answer(*server._token(dict(self.headers), body))
                    return
                if server.bearer is not None and self.headers.get("Authorization") != f"Bearer {server.bearer}":
                    self._answer(401, {"WWW-Authenticate": "Bearer"}, b"")
                    return
                parts = parts_of(self.headers["Content-Type"], body)
                uids = [str(pydicom.dcmread(io.BytesIO(part)).SOPInstanceUID) for part in parts]
                server.requests.append(StowRequest(self.path, dict(self.headers), uids))
                self._answer(*server.respond(uids))

            def do_GET(self) -> None:
                if server.bearer is not None and self.headers.get("Authorization") != f"Bearer {server.bearer}":
                    self._answer(401, {}, b"")
                    return
                self._answer(200, {"Content-Type": "application/dicom+json"}, b"[]")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}/dicom-web"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def _token(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        form = urllib.parse.parse_qs(body.decode())
        self.token_requests.append(form)
        expected = (
            "Basic " + base64.b64encode(f"{self.client[0]}:{self.client[1]}".encode()).decode() if self.client else ""
        )
        if form.get("grant_type") != ["client_credentials"] or headers.get("Authorization") != expected:
            return 401, {"Content-Type": "application/json"}, b'{"error": "invalid_client"}'
        self.tokens_issued += 1
        self.bearer = f"token-{self.tokens_issued}"
        document = {"access_token": self.bearer, "token_type": "Bearer", "expires_in": self.expires_in}
        return 200, {"Content-Type": "application/json"}, json.dumps(document).encode()
