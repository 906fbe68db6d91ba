from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.web.support import WebApp, web_app


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebApp]:
    app = web_app(tmp_path)
    with app.client:
        yield app
    app.engine.dispose()
