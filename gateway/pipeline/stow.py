"""Sending outputs to a DICOMweb destination with STOW-RS (PS3.18 section 10.5), over httpx.

One delivery attempt is one :class:`StowSession`: the outputs not yet acknowledged go in
requests of at most ``max_instances_per_request`` instances, each a ``multipart/related;
type="application/dicom"`` body of the outbox files as they are (Part 10 files).  The
response's per-instance result decides each output (:func:`stow_results`, pure):

- listed in the Referenced SOP Sequence: acknowledged (with its Warning Reason as a warning
  status, e.g. 0xB000 coercion of data elements);
- listed in the Failed SOP Sequence: failed with its Failure Reason (0x0110, 0xA700, 0xA900,
  0xC000...), as a C-STORE failure status is: the delivery is retried with backoff, then
  dead-lettered;
- 200 without a body: every instance stored; 202/400/409 without a readable body: every
  instance of the request failed (none is known to be stored; sending it again is harmless);
- 408, 429, 5xx, a connection error or a timeout: :class:`gateway.pipeline.sender.SendError`
  (nothing recorded; the whole delivery is retried), with the server's ``Retry-After``;
- 401/403, 404/405, 413, a redirect: SendError saying what to change.

Why not the ``dicomweb-client`` library: its ``store_instances`` raises ``requests``'
``HTTPError`` on 409 and 4xx/5xx answers without returning the Failed SOP Sequence, retries
inside the call with its own sleeps (which would hide Retry-After and hold the delivery's
lease), and re-encodes every data set; here the outbox bytes are sent unchanged and every
response is read.  The multipart body is built by :func:`multipart_related` (a fresh random
boundary checked against the parts' bytes, RFC 2046 framing), and its round trip through the
standard library's MIME parser is tested.

Authentication: none, HTTP basic (password from a file), a bearer token from a file (read at
every attempt, so it may be rotated), or OAuth 2 client credentials (RFC 6749 section 4.4): the
access token is cached until shortly before ``expires_in`` runs out, and dropped on a 401.
Secrets are never logged.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
from pydicom import dcmread

from gateway.config.pipeline import DicomwebAuthentication, DicomwebDestination
from gateway.pipeline.sender import InstanceResult, SendError, Session

LOGGER = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"

#: Response attributes of PS3.18 Table 10.5.3-1 (tags as DICOM JSON writes them).
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"

#: A Failed SOP Sequence item without a Failure Reason: "Processing failure".
PROCESSING_FAILURE = 0x0110

#: HTTP statuses after which the same request may well succeed later: the delivery is retried.
RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})

#: An OAuth 2 access token is renewed this many seconds before its ``expires_in`` runs out.
TOKEN_EXPIRY_MARGIN_SECONDS = 30.0


# -- the per-instance result ----------------------------------------------------------------


def stow_results(
    http_status: int,
    content_type: str,
    body: bytes,
    sop_instance_uids: Sequence[str],
    *,
    retry_after: str | None = None,
    now: datetime | None = None,
) -> list[InstanceResult]:
    """What a STOW-RS response says about each instance sent (in the order of ``sop_instance_uids``).

    Raises SendError (nothing is recorded, the delivery is retried) when the response says
    nothing about the instances and a later try may succeed or needs the configuration changed.
    """
    if 300 <= http_status < 400:
        raise SendError(f"HTTP {http_status}: the STOW-RS service redirected us; set base_url to the final address")
    if http_status in RETRYABLE_HTTP or http_status >= 500:
        raise SendError(f"HTTP {http_status} from the STOW-RS service", retry_after=parse_retry_after(retry_after, now))
    if http_status in (401, 403):
        raise SendError(f"HTTP {http_status}: the STOW-RS service refused our credentials; check authentication")
    if http_status in (404, 405):
        raise SendError(f"HTTP {http_status}: no STOW-RS service at this address; check base_url")
    if http_status == 413:
        raise SendError("HTTP 413: the request is too large for the service; lower max_instances_per_request")
    if http_status not in (200, 202, 400, 409, 415):
        raise SendError(f"HTTP {http_status}: not a STOW-RS answer")
    response = _response_dataset(content_type, body)
    if response is None:
        if http_status == 200:
            return [InstanceResult(0x0000) for _ in sop_instance_uids]
        reason = f"HTTP {http_status} without a per-instance result"
        return [InstanceResult(None, reason) for _ in sop_instance_uids]
    referenced, failed = response
    results = []
    for uid in sop_instance_uids:
        if uid in failed:
            status = failed[uid]
            results.append(InstanceResult(status, f"HTTP {http_status}, failure reason 0x{status:04X}"))
        elif uid in referenced:
            results.append(InstanceResult(referenced[uid]))
        else:
            results.append(InstanceResult(None, f"HTTP {http_status}: the response does not mention this instance"))
    return results


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _response_dataset(content_type: str, body: bytes) -> tuple[dict[str, int], dict[str, int]] | None:
    """(referenced UID -> status, failed UID -> failure reason) from a DICOM JSON or XML response; None if none."""
    if not body.strip():
        return None
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    try:
        if media in (DICOM_JSON, "application/json") or body.lstrip()[:1] in (b"{", b"["):
            return _from_json(json.loads(body))
        if media in (DICOM_XML, "application/xml", "text/xml") or body.lstrip()[:1] == b"<":
            return _from_xml(ElementTree.fromstring(body))  # noqa: S314 - the destination's own answer, no DTDs
    except (ValueError, TypeError, KeyError, ElementTree.ParseError):
        return None
    return None


def _from_json(document: Any) -> tuple[dict[str, int], dict[str, int]] | None:
    if isinstance(document, list) and len(document) == 1:  # some servers wrap the data set in an array
        document = document[0]
    if not isinstance(document, dict):
        return None
    if REFERENCED_SOP_SEQUENCE not in document and FAILED_SOP_SEQUENCE not in document:
        return None

    def items(tag: str) -> list[dict[str, Any]]:
        value = (document.get(tag) or {}).get("Value") or []
        return [item for item in value if isinstance(item, dict)]

    def first(item: dict[str, Any], tag: str) -> Any:
        values = (item.get(tag) or {}).get("Value") or []
        return values[0] if values else None

    referenced = {
        str(first(item, REFERENCED_SOP_INSTANCE_UID)): _status(first(item, WARNING_REASON), 0x0000)
        for item in items(REFERENCED_SOP_SEQUENCE)
    }
    failed = {
        str(first(item, REFERENCED_SOP_INSTANCE_UID)): _status(first(item, FAILURE_REASON), PROCESSING_FAILURE)
        for item in items(FAILED_SOP_SEQUENCE)
    }
    return referenced, failed


def _from_xml(root: ElementTree.Element) -> tuple[dict[str, int], dict[str, int]] | None:
    """The Native DICOM Model (PS3.19 Annex A): DicomAttribute elements with keyword/tag, Item, Value."""

    def attribute(parent: ElementTree.Element, tag: str) -> ElementTree.Element | None:
        for child in parent:
            if child.tag.rsplit("}", 1)[-1] == "DicomAttribute" and child.get("tag", "").upper() == tag:
                return child
        return None

    def items(tag: str) -> list[ElementTree.Element]:
        found = attribute(root, tag)
        return [] if found is None else [item for item in found if item.tag.rsplit("}", 1)[-1] == "Item"]

    def first(item: ElementTree.Element, tag: str) -> str | None:
        found = attribute(item, tag)
        if found is None:
            return None
        values = [value.text for value in found if value.tag.rsplit("}", 1)[-1] == "Value"]
        return (values[0] or "").strip() if values else None

    if attribute(root, REFERENCED_SOP_SEQUENCE) is None and attribute(root, FAILED_SOP_SEQUENCE) is None:
        return None
    referenced = {
        str(first(item, REFERENCED_SOP_INSTANCE_UID)): _status(first(item, WARNING_REASON), 0x0000)
        for item in items(REFERENCED_SOP_SEQUENCE)
    }
    failed = {
        str(first(item, REFERENCED_SOP_INSTANCE_UID)): _status(first(item, FAILURE_REASON), PROCESSING_FAILURE)
        for item in items(FAILED_SOP_SEQUENCE)
    }
    return referenced, failed


def _status(value: Any, default: int) -> int:
    """A US status value (DICOM JSON gives a number; XML a decimal string)."""
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# -- the request body -----------------------------------------------------------------------


def multipart_related(parts: Sequence[bytes], part_type: str = "application/dicom") -> tuple[str, bytes]:
    """(Content-Type header, body) of a ``multipart/related`` message with one part per item (RFC 2046, 2387)."""
    while True:
        boundary = "gazex-" + secrets.token_hex(16)
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in part for part in parts):
            break
    chunks = []
    for part in parts:
        chunks += [marker, b"\r\nContent-Type: ", part_type.encode("ascii"), b"\r\n\r\n", part, b"\r\n"]
    chunks += [marker, b"--\r\n"]
    content_type = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return content_type, b"".join(chunks)


# -- authentication -------------------------------------------------------------------------


def _secret(path: Path | None, what: str) -> str:
    if path is None:  # pragma: no cover - the settings require it for this type
        raise SendError(f"authentication: {what} is not configured")
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SendError(f"authentication: cannot read {what} {path}: {type(exc).__name__}") from None
    if not value:
        raise SendError(f"authentication: {what} {path} is empty")
    return value


@dataclass
class _Token:
    value: str
    expires_at: float  # time.monotonic()


class TokenCache:
    """OAuth 2 access tokens by (token URL, client id, scope), kept until shortly before they expire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, auth: DicomwebAuthentication, client: httpx.Client) -> str:
        key = (str(auth.token_url), str(auth.client_id), auth.scope or "")
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.expires_at > self._clock():
                return token.value
        value, lifetime = _fetch_token(auth, client)
        with self._lock:
            self._tokens[key] = _Token(value, self._clock() + max(0.0, lifetime - TOKEN_EXPIRY_MARGIN_SECONDS))
        return value

    def forget(self, auth: DicomwebAuthentication) -> None:
        with self._lock:
            self._tokens.pop((str(auth.token_url), str(auth.client_id), auth.scope or ""), None)


def _fetch_token(auth: DicomwebAuthentication, client: httpx.Client) -> tuple[str, float]:
    """RFC 6749 section 4.4: the client credentials grant; (access token, lifetime in seconds)."""
    secret = _secret(auth.client_secret_file, "client_secret_file")
    form = {"grant_type": "client_credentials"}
    if auth.scope:
        form["scope"] = auth.scope
    headers = {"Accept": "application/json"}
    if auth.client_authentication == "post":
        form.update(client_id=str(auth.client_id), client_secret=secret)
    else:
        headers["Authorization"] = _basic(str(auth.client_id), secret)
    try:
        response = client.post(str(auth.token_url), data=form, headers=headers)
    except httpx.HTTPError as exc:
        raise SendError(f"the OAuth 2 token endpoint {auth.token_url} cannot be reached: {_why(exc)}") from None
    try:
        document = response.json()
    except ValueError:
        document = {}
    if response.status_code != 200 or not isinstance(document, dict) or not document.get("access_token"):
        error = document.get("error") if isinstance(document, dict) else None
        detail = f" ({error})" if isinstance(error, str) else ""
        raise SendError(
            f"the OAuth 2 token endpoint {auth.token_url} gave no access token: HTTP {response.status_code}{detail}",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    kind = str(document.get("token_type", "Bearer"))
    if kind.lower() != "bearer":
        raise SendError(f"the OAuth 2 token endpoint {auth.token_url} gave a {kind!r} token; only Bearer is supported")
    try:
        lifetime = float(document.get("expires_in", 3600))
    except (TypeError, ValueError):
        lifetime = 3600.0
    return str(document["access_token"]), lifetime


def _basic(user: str, password: str) -> str:
    """RFC 7617 credentials (UTF-8)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _authorization(auth: DicomwebAuthentication, client: httpx.Client, tokens: TokenCache) -> dict[str, str]:
    """The request headers that authenticate us (secrets read now, so they may be rotated)."""
    if auth.type == "basic":
        return {"Authorization": _basic(str(auth.username), _secret(auth.password_file, "password_file"))}
    if auth.type == "bearer":
        return {"Authorization": "Bearer " + _secret(auth.token_file, "token_file")}
    if auth.type == "oauth2":
        return {"Authorization": "Bearer " + tokens.get(auth, client)}
    return {}


# -- HTTPS ----------------------------------------------------------------------------------


def https_context(destination: DicomwebDestination) -> ssl.SSLContext:
    """Certificate and host name checks as configured (``tls.verify``), the CA file, our client certificate."""
    tls = destination.tls
    if tls.verify:
        try:
            context = ssl.create_default_context(cafile=tls.ca_certificates)
        except (ssl.SSLError, OSError) as exc:
            raise SendError(f"cannot load the CA certificates {tls.ca_certificates}: {exc}") from None
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.certificate is not None:
        try:
            context.load_cert_chain(certfile=tls.certificate, keyfile=tls.private_key)
        except (ssl.SSLError, OSError) as exc:
            raise SendError(f"cannot load the client certificate {tls.certificate}: {exc}") from None
    return context


def _why(exc: httpx.HTTPError) -> str:
    """An httpx error in words (the reason, not a traceback): timeouts, refused connections, TLS failures."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS: {cause.verify_message or cause.reason}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS: {cause.reason or cause}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def open_client(destination: DicomwebDestination) -> httpx.Client:
    """An httpx client for one attempt: the destination's timeout and TLS, no redirects, no proxies from the
    environment (a hospital proxy variable must not silently reroute results)."""
    return httpx.Client(
        timeout=destination.timeout_seconds,
        verify=https_context(destination) if destination.base_url.startswith("https://") else True,
        follow_redirects=False,
        trust_env=False,
    )


# -- the sender -----------------------------------------------------------------------------


class StowSession:
    """One delivery attempt to one DICOMweb destination."""

    def __init__(self, name: str, destination: DicomwebDestination, client: httpx.Client, tokens: TokenCache) -> None:
        self._name = name
        self._destination = destination
        self._client = client
        self._tokens = tokens
        self.batch_size = destination.max_instances_per_request
        self.url = destination.base_url + "/studies"

    def send(self, path: Path) -> int:
        """STOW one file (the :class:`Session` protocol); its status, or SendError when the response does not say."""
        uid = str(dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
        [result] = self.send_batch([(uid, path)])
        if result.status is None:
            raise SendError(f"destination {self._name}: {result.reason}")
        return result.status

    def send_batch(self, instances: Sequence[tuple[str, Path]]) -> list[InstanceResult]:
        parts = [path.read_bytes() for _, path in instances]  # FileNotFoundError: the Deliverer records it
        content_type, body = multipart_related(parts)
        auth = self._destination.authentication
        headers = {"Content-Type": content_type, "Accept": DICOM_JSON, **self._headers(auth)}
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SendError(f"destination {self._name} ({self.url}): {_why(exc)}") from None
        if response.status_code == 401 and auth.type == "oauth2":
            self._tokens.forget(auth)  # the next attempt asks for a new token
        try:
            return stow_results(
                response.status_code,
                response.headers.get("Content-Type", ""),
                response.content,
                [uid for uid, _ in instances],
                retry_after=response.headers.get("Retry-After"),
            )
        except SendError as exc:
            raise SendError(f"destination {self._name} ({self.url}): {exc}", retry_after=exc.retry_after) from None

    def _headers(self, auth: DicomwebAuthentication) -> dict[str, str]:
        try:
            return _authorization(auth, self._client, self._tokens)
        except SendError as exc:
            raise SendError(f"destination {self._name}: {exc}", retry_after=exc.retry_after) from None


class StowSender:
    """The STOW-RS sender (a :class:`gateway.pipeline.sender.Sender`); keeps OAuth 2 tokens between attempts."""

    def __init__(self, tokens: TokenCache | None = None) -> None:
        self.tokens = tokens or TokenCache()

    def open(
        self, name: str, destination: Any, calling_ae_title: str, sop_classes: Sequence[str]
    ) -> contextlib.AbstractContextManager[Session]:
        if not isinstance(destination, DicomwebDestination):
            raise SendError(f"destination {name} is not a DICOMweb destination")
        return self._session(name, destination)

    @contextlib.contextmanager
    def _session(self, name: str, destination: DicomwebDestination) -> Iterator[Session]:
        with open_client(destination) as client:
            yield StowSession(name, destination, client, self.tokens)


# -- reachability (the console's and API's "echo" of a DICOMweb destination) ----------------


@dataclass(frozen=True)
class Reachability:
    ok: bool
    message: str
    seconds: float
    status: int | None = None


def check_reachable(destination: DicomwebDestination, tokens: TokenCache | None = None) -> Reachability:
    """An HTTP reachability check instead of C-ECHO: QIDO-RS ``GET BASE_URL/studies?limit=1`` with our
    authentication; any answer but a redirect, 401/403, 404 or 5xx counts as reachable."""
    url = destination.base_url + "/studies"
    started = time.monotonic()
    try:
        with open_client(destination) as client:
            auth = _authorization(destination.authentication, client, tokens or TokenCache())
            headers = {"Accept": DICOM_JSON, **auth}
            response = client.get(url, params={"limit": "1"}, headers=headers)
    except SendError as exc:
        return Reachability(False, f"HTTP check of {url}: {exc}", time.monotonic() - started)
    except httpx.HTTPError as exc:
        return Reachability(False, f"HTTP check of {url}: {_why(exc)}", time.monotonic() - started)
    seconds = time.monotonic() - started
    code = response.status_code
    ok = code < 300 or code in (400, 406)  # QIDO may refuse "limit" or the media type and still be there
    what = {401: "our credentials were refused", 403: "our credentials were refused", 404: "no DICOMweb service here"}
    words = what.get(code, "reachable" if ok else "not usable")
    return Reachability(ok, f"HTTP check (QIDO-RS GET studies?limit=1): HTTP {code}, {words}", seconds, code)
