"""What the HTTP layer works with: the running gateway's parts, passed in, never global."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from gateway.accounts import Accounts
from gateway.config import Settings
from gateway.events import GatewayObserver

if TYPE_CHECKING:
    from gateway.runtime import GatewayRuntime


@dataclass
class ApiContext:
    """The settings, database and runtime the routes use (``request.app.state.context``)."""

    settings: Settings
    engine: Engine
    observer: GatewayObserver = field(default_factory=GatewayObserver)
    runtime: GatewayRuntime | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.accounts = Accounts(self.engine)

    @property
    def secure_cookies(self) -> bool:
        return self.settings.http.tls.enabled


def current_settings(context: ApiContext) -> Settings:
    """The settings the routes act on (destinations to echo, rules to test, ...): the one place
    that turns to the live configuration once it exists."""
    return context.settings
