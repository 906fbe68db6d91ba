"""Helpers for the end-to-end pipeline tests: gazex serve with a pipeline config, polling the database."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.ingest_support import serve_config, write_config


def pipeline_config(
    path: Path, data: Path, port: int, archive_port: int, url: str | None = None, **sections: dict[str, Any]
) -> Path:
    """A gazex serve configuration with the FakeEngine, one destination and short timings (1 s quiet)."""
    values = serve_config(data, port)
    values.update(
        {
            "model": {"path": "fake"},
            "destinations": {"archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": archive_port,
                                         "timeout_seconds": 5}},
            "completion": {"quiet_seconds": 1, "check_interval_seconds": 0.2},
            "worker": {"poll_seconds": 0.2, "lease_seconds": 4, "heartbeat_seconds": 1, "retry_delay_seconds": 1},
            "delivery": {"base_delay_seconds": 0.5, "factor": 2, "max_delay_seconds": 2, "max_attempts": 20,
                         "poll_seconds": 0.2, "lease_seconds": 4, "heartbeat_seconds": 1},
        }
    )  # fmt: skip
    if url is not None:
        values["database"] = {"url": url}
    for section, overrides in sections.items():
        values[section] = {**values.get(section, {}), **overrides}
    return write_config(path, values)


def query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql), params).all())
    except Exception:  # the schema may not exist while gazex serve starts
        return []
    finally:
        engine.dispose()


def wait_for(condition: Callable[[], Any], timeout: float = 60, what: str = "the condition") -> Any:
    """Poll until ``condition()`` is truthy; its value.  Never a sleep as an assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)
