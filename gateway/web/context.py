"""What the HTTP layer works with: the running gateway's parts, passed in, never global."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from gateway.accounts import Accounts
from gateway.config import Settings
from gateway.config.live import LiveSettings
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
    _live: LiveSettings | None = field(default=None, init=False, repr=False)
    _live_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.accounts = Accounts(self.engine)

    @property
    def secure_cookies(self) -> bool:
        return self.settings.http.tls.enabled


def live_settings(context: ApiContext) -> LiveSettings:
    """The running gateway's live settings; without a runtime (tests, tools), one over the context's
    database, seeded from the context's settings at first use."""
    runtime_live = context.runtime.live if context.runtime is not None else None
    if runtime_live is not None:
        return runtime_live
    with context._live_lock:
        if context._live is None:
            live = LiveSettings(context.engine, context.settings, observers=context.observer)
            live.seed()
            context._live = live
        return context._live


def current_settings(context: ApiContext) -> Settings:
    """The settings the routes act on (destinations to echo, rules to test, ...): the live configuration."""
    return live_settings(context).current()
