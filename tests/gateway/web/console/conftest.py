"""The console on the real app: a migrated SQLite database, real accounts, a TestClient with cookies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from gateway.config import Settings, load_settings
from gateway.db import create_database_engine, upgrade
from gateway.web import ApiContext, create_app

PASSWORD = "a long console password"  # noqa: S105 - a test account's
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Console:
    settings: Settings
    engine: Engine
    context: ApiContext
    client: TestClient

    def user(self, name: str, role: str) -> str:
        self.context.accounts.add_user(name, role, PASSWORD)
        return name

    def log_in(self, name: str, role: str = "admin") -> str:
        """Log in as a new user with ``role`` through the login form; the page's CSRF token."""
        self.user(name, role)
        response = self.client.post("/login", data={"username": name, "password": PASSWORD, "next": "/users"})
        assert response.status_code == 303, response.text
        return self.csrf("/configuration")

    def csrf(self, page: str) -> str:
        response = self.client.get(page)
        assert response.status_code == 200, response.text
        found = _CSRF.search(response.text)
        assert found is not None, "the page has no form with the CSRF token"
        return found.group(1)

    def post(self, path: str, data: dict[str, Any], csrf: str) -> Any:
        return self.client.post(path, data={**data, "csrf_token": csrf})


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    values: dict[str, Any] = {
        "storage": {"data_dir": str(tmp_path / "data"), "min_free_disk": 0},
        "destinations": {"archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 11112}},
    }
    settings = load_settings(overrides=values, environ={})
    engine = create_database_engine(settings.database_url)
    upgrade(engine)
    context = ApiContext(settings=settings, engine=engine)
    client = TestClient(create_app(context), base_url="http://127.0.0.1", follow_redirects=False)
    with client:
        yield Console(settings, engine, context, client)
    engine.dispose()
