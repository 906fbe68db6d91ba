"""A FastAPI TestClient on the real app, a real migrated SQLite database and real accounts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from gateway.accounts import Accounts
from gateway.config import Settings, load_settings
from gateway.db import create_database_engine, upgrade
from gateway.events import GatewayObserver
from gateway.web import ApiContext, create_app

PASSWORD = "a long test password"  # noqa: S105 - a test account's password


class RecordingObserver(GatewayObserver):
    def __init__(self) -> None:
        self.logins: list[tuple[str, str | None, bool, str]] = []
        self.logouts: list[str] = []
        self.changes: list[Any] = []

    def user_login(self, username: str, address: str | None, success: bool, method: str) -> None:
        self.logins.append((username, address, success, method))

    def user_logout(self, username: str, address: str | None) -> None:
        self.logouts.append(username)

    def configuration_changed(self, change: Any) -> None:
        self.changes.append(change)


@dataclass
class WebApp:
    settings: Settings
    engine: Engine
    context: ApiContext
    observer: RecordingObserver
    client: TestClient

    @property
    def accounts(self) -> Accounts:
        return self.context.accounts

    def token(self, role: str) -> str:
        """A bearer token of a fresh user with ``role``."""
        name = f"{role}-{len(self.accounts.users())}"
        self.accounts.add_user(name, role, PASSWORD)
        secret, _ = self.accounts.create_token(name, "tests")
        return secret

    def bearer(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}


def web_app(tmp_path: Path, **sections: dict[str, Any]) -> WebApp:
    values: dict[str, Any] = {"storage": {"data_dir": str(tmp_path / "data"), "min_free_disk": 0}}
    values.update(sections)
    settings = load_settings(overrides=values, environ={})
    engine = create_database_engine(settings.database_url)
    upgrade(engine)
    observer = RecordingObserver()
    context = ApiContext(settings=settings, engine=engine, observer=observer)
    client = TestClient(create_app(context), base_url="http://127.0.0.1")
    return WebApp(settings, engine, context, observer, client)
