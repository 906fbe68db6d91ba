"""The console's destinations of both types: a DICOMweb destination is listed (not as a C-STORE peer),
added, edited and removed through the plain form (which a browser without scripts submits), refused
with its reasons on the form, never shows a secret, and its Test connection button runs the HTTP
reachability check against a STOW server on loopback; a DICOM one's runs a C-ECHO."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.config import load_settings
from gateway.db import create_database_engine, upgrade
from gateway.demo.archive import RecordingArchive
from gateway.web import ApiContext, create_app
from gateway.web.context import live_settings
from tests.gateway.pipeline.stow_support import StowServer
from tests.gateway.web.console.conftest import Console


@pytest.fixture
def web_console(tmp_path: Path) -> Iterator[tuple[Console, StowServer]]:
    with StowServer() as server:
        values: dict[str, Any] = {
            "storage": {"data_dir": str(tmp_path / "data"), "min_free_disk": 0},
            "destinations": {
                "archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 11112},
                "cloud": {"type": "dicomweb", "base_url": server.base_url},
            },
        }
        settings = load_settings(overrides=values, environ={})
        engine = create_database_engine(settings.database_url)
        upgrade(engine)
        context = ApiContext(settings=settings, engine=engine)
        client = TestClient(create_app(context), base_url="http://127.0.0.1", follow_redirects=False)
        with client:
            yield Console(settings, engine, context, client), server
        engine.dispose()


def test_a_dicomweb_destination_is_listed_and_checked_over_http(web_console: tuple[Console, StowServer]) -> None:
    console, server = web_console
    csrf = console.log_in("olga", "admin")
    page = console.client.get("/configuration").text
    assert 'data-destination="cloud"' in page and "DICOMweb (STOW-RS)" in page and server.base_url in page
    assert 'data-destination="archive"' in page and "<code>ARCHIVE</code>" in page
    checked = console.post("/configuration/destinations/cloud/echo", {}, csrf)
    assert checked.status_code == 303
    flashed = console.client.get("/configuration").text
    assert "cloud: HTTP check (QIDO-RS GET studies?limit=1): HTTP 200, reachable" in flashed


class _FormReader(HTMLParser):
    """What a browser without scripts submits from one form: text inputs, checked boxes and radios,
    each select's selected option (else its first)."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._first: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = found.get("id") == self.form_id
        if not self.inside:
            return
        if tag == "input" and "name" in found:
            kind = found.get("type", "text")
            if kind not in ("checkbox", "radio") or "checked" in found:
                self.values[found["name"]] = found.get("value", "" if kind not in ("checkbox", "radio") else "on")
        elif tag == "select":
            self._select, self._first = found["name"], None
        elif tag == "option" and self._select is not None:
            if self._first is None:
                self._first = found["value"]
            if "selected" in found:
                self.values[self._select] = found["value"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select is not None:
            self.values.setdefault(self._select, self._first or "")
            self._select = None
        elif tag == "form":
            self.inside = False


def _form_values(html: str, form_id: str = "add-destination") -> dict[str, str]:
    reader = _FormReader(form_id)
    reader.feed(html)
    assert reader.values, f"no form #{form_id} on the page"
    return reader.values


def _stored(console: Console) -> tuple[int, dict[str, Any]]:
    """(revision, destinations) of the live configuration as stored in the database."""
    newest = live_settings(console.context).history(1)[0]
    return newest.revision, newest.document["destinations"]


def test_an_admin_adds_edits_tests_and_removes_a_dicomweb_destination_through_the_form(
    web_console: tuple[Console, StowServer], tmp_path: Path
) -> None:
    console, server = web_console
    token, client_secret = "bearer-token-4c1d9e", "client-secret-77ab03"
    token_file, secret_file = tmp_path / "token", tmp_path / "client-secret"
    token_file.write_text(token + "\n")
    secret_file.write_text(client_secret + "\n")
    server.client = ("gazex-console", client_secret)
    csrf = console.log_in("olga", "admin")
    fields = {"name": "stow2", "type": "dicomweb", "web_base_url": server.base_url + "/", "auth_type": "bearer"}
    fields |= {"auth_token_file": str(token_file), "web_timeout_seconds": "12"}
    # fields of the other type and of another authentication are left aside, as the form says
    fields |= {"ae_title": "IGNORED", "port": "not a port", "auth_username": "nobody", "auth_client_id": "x"}
    added = console.post("/configuration/destinations", fields, csrf)
    assert added.status_code == 303, added.text
    revision, destinations = _stored(console)
    assert destinations["stow2"] == {
        "type": "dicomweb",
        "base_url": server.base_url,
        "authentication": {"type": "bearer", "token_file": str(token_file), "client_authentication": "basic"},
        "tls": {"verify": True},
        "timeout_seconds": 12.0,
        "max_instances_per_request": 10,
    }
    page = console.client.get("/configuration").text
    assert f"destination stow2 (revision {revision})" in page
    row = page[page.index('data-destination="stow2"') :].split("</tr>")[0]
    assert "DICOMweb (STOW-RS)" in row and server.base_url in row and "authentication bearer" in row
    assert str(token_file) in row and ">Test connection<" in row and "/studies?limit=1" in row

    # edit: the form comes filled in; change it to OAuth 2 client credentials without verifying TLS
    editing = console.client.get("/configuration?edit=stow2")
    assert editing.status_code == 200 and "Change destination stow2" in editing.text
    values = _form_values(editing.text)
    assert values["type"] == "dicomweb" and values["web_base_url"] == server.base_url
    assert values["auth_type"] == "bearer" and values["auth_token_file"] == str(token_file)
    assert values["web_timeout_seconds"] == "12.0" and "web_tls_skip_verify" not in values
    values |= {"auth_type": "oauth2", "auth_token_url": server.token_url, "auth_client_id": "gazex-console"}
    values |= {"auth_client_secret_file": str(secret_file), "auth_scope": "dicomweb.write", "web_tls_skip_verify": "on"}
    changed = console.client.post("/configuration/destinations", data=values)
    assert changed.status_code == 303, changed.text
    revision, destinations = _stored(console)
    assert destinations["stow2"]["authentication"] == {
        "type": "oauth2",
        "token_url": server.token_url,
        "client_id": "gazex-console",
        "client_secret_file": str(secret_file),
        "scope": "dicomweb.write",
        "client_authentication": "basic",
    }
    assert destinations["stow2"]["tls"] == {"verify": False}
    # saving the edit form unchanged stores nothing
    again = console.client.post(
        "/configuration/destinations", data=_form_values(console.client.get("/configuration?edit=stow2").text)
    )
    assert again.status_code == 303 and _stored(console)[0] == revision
    assert "destination stow2: nothing to change" in console.client.get("/configuration").text

    # the test button: the HTTP check with the OAuth 2 token got with the secret from its file
    checked = console.post("/configuration/destinations/stow2/echo", {}, csrf)
    assert checked.status_code == 303
    page = console.client.get("/configuration").text
    assert "stow2: HTTP check (QIDO-RS GET studies?limit=1): HTTP 200, reachable" in page
    assert server.tokens_issued == 1
    for shown in (page, console.client.get("/configuration?edit=stow2").text):
        assert token not in shown and client_secret not in shown  # paths only, never the secrets
        assert str(secret_file) in shown

    removed = console.post("/configuration/destinations/stow2/delete", {}, csrf)
    assert removed.status_code == 303
    assert (
        "stow2" not in _stored(console)[1]
        and 'data-destination="stow2"' not in console.client.get("/configuration").text
    )


def test_a_refused_dicomweb_destination_shows_why_on_the_form_and_stores_nothing(
    web_console: tuple[Console, StowServer], tmp_path: Path
) -> None:
    console, _ = web_console
    csrf = console.log_in("olga", "admin")
    before = _stored(console)
    password_file = tmp_path / "password"
    password_file.write_text("pacs password 91f2\n")
    refusals = {
        "ftp://pacs.example.org/dicom-web": "is not an http:// or https:// URL with a host",
        "": "destinations.bad.base_url: required, not set",
        "https://pacs.example.org/dicom-web?x=1": "give the URL without a query or fragment",
    }
    for base_url, reason in refusals.items():
        fields = {"name": "bad", "type": "dicomweb", "web_base_url": base_url, "auth_type": "basic"}
        fields |= {"auth_username": "gazex", "auth_password_file": str(password_file)}
        refused = console.post("/configuration/destinations", fields, csrf)
        assert refused.status_code == 422, base_url
        assert "Not changed" in refused.text and reason in refused.text, refused.text
        # the form keeps what was typed, and the chosen type and authentication
        values = _form_values(refused.text)
        assert (values["name"], values["web_base_url"], values["type"]) == ("bad", base_url, "dicomweb")
        assert (values["auth_type"], values["auth_password_file"]) == ("basic", str(password_file))
        assert "pacs password 91f2" not in refused.text
    incomplete = console.post(
        "/configuration/destinations",
        {"name": "bad", "type": "dicomweb", "web_base_url": "https://pacs.example.org/dicom-web", "auth_type": "basic"},
        csrf,
    )
    assert (
        incomplete.status_code == 422 and "authentication type basic needs username, password_file" in incomplete.text
    )
    unknown = console.post("/configuration/destinations", {"name": "bad", "type": "ftp"}, csrf)
    assert unknown.status_code == 422 and "type must be dicom (C-STORE, the default) or dicomweb" in unknown.text
    assert _stored(console) == before
    assert 'data-destination="bad"' not in console.client.get("/configuration").text
    missing = console.client.get("/configuration?edit=nowhere")
    assert missing.status_code == 200 and "there is no destination &#39;nowhere&#39; to edit" in missing.text


def test_the_test_button_c_echoes_a_dicom_destination_added_and_edited_through_the_form(
    web_console: tuple[Console, StowServer], free_port: Callable[[], int]
) -> None:
    console, _ = web_console
    csrf = console.log_in("olga", "admin")
    port = free_port()
    fields = {"name": "pacs2", "type": "dicom", "ae_title": "PACS2", "host": "127.0.0.1", "port": str(port)}
    fields |= {"web_base_url": "ignored", "auth_type": "bearer"}  # the DICOMweb fields are not used
    assert console.post("/configuration/destinations", fields, csrf).status_code == 303
    assert _stored(console)[1]["pacs2"] == {
        "ae_title": "PACS2",
        "host": "127.0.0.1",
        "port": port,
        "timeout_seconds": 30.0,
        "tls": {"enabled": False, "verify": True, "minimum_version": "1.2"},
    }
    values = _form_values(console.client.get("/configuration?edit=pacs2").text)
    assert (values["type"], values["ae_title"], values["port"]) == ("dicom", "PACS2", str(port))
    values["calling_ae_title"] = "GAZEXOUT"
    assert console.client.post("/configuration/destinations", data=values).status_code == 303
    assert _stored(console)[1]["pacs2"]["calling_ae_title"] == "GAZEXOUT"
    row = console.client.get("/configuration").text.split('data-destination="pacs2"')[1].split("</tr>")[0]
    assert "DICOM (C-STORE)" in row and "<code>PACS2</code> at 127.0.0.1:" in row and ">Test connection<" in row
    with RecordingArchive(port=port, ae_title="PACS2"):
        console.post("/configuration/destinations/pacs2/echo", {}, csrf)
    assert f"C-ECHO pacs2 (PACS2@127.0.0.1:{port}): success" in console.client.get("/configuration").text
