"""The console with a DICOMweb destination configured: it is listed (not as a C-STORE peer) and its
Check button runs the HTTP reachability check against a STOW server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.config import load_settings
from gateway.db import create_database_engine, upgrade
from gateway.web import ApiContext, create_app
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
