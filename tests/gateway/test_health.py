"""``gazex health``: each check on real files, a real SQLite database and a real socket."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.cli import COMMAND_MODULES, main
from gateway.db import create_database_engine, upgrade
from gateway.health import check_database, check_listener, check_spool
from tests.conftest import allocate_port


def test_health_is_a_command() -> None:
    assert "health" in COMMAND_MODULES


def test_database_missing_sqlite_file(tmp_path: Path) -> None:
    result = check_database(f"sqlite:///{tmp_path / 'gazex.db'}")
    assert not result.ok
    assert "does not exist" in result.detail and "gazex db upgrade" in result.detail
    assert not (tmp_path / "gazex.db").exists()  # the check creates nothing


def test_database_empty_schema_then_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gazex.db'}"
    engine = create_database_engine(url)
    try:
        with engine.connect():
            pass  # creates the empty file
        result = check_database(url)
        assert not result.ok and "run `gazex db upgrade`" in result.detail
        upgrade(engine)
    finally:
        engine.dispose()
    result = check_database(url)
    assert result.ok, result.detail
    assert "schema revision" in result.detail


def test_database_unreachable_postgres_is_reported_not_raised() -> None:
    port = allocate_port()  # nothing listens there
    result = check_database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/gazex?connect_timeout=2")
    assert not result.ok
    assert f"127.0.0.1:{port}" in result.detail


def test_spool_writable_with_room(tmp_path: Path) -> None:
    result = check_spool(tmp_path, 1024, free_bytes=lambda _: 10 << 30)
    assert result.ok, result.detail
    assert "10.0 GiB free" in result.detail
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


def test_spool_below_the_reserve(tmp_path: Path) -> None:
    result = check_spool(tmp_path, 1 << 30, free_bytes=lambda _: 5 << 20)
    assert not result.ok
    assert "5.0 MiB free, below the reserve of 1.0 GiB" in result.detail
    assert "storage.min_free_disk" in result.detail
    assert check_spool(tmp_path, 1 << 30, free_bytes=lambda _: 0, name="outbox").name == "outbox"


def test_spool_missing(tmp_path: Path) -> None:
    result = check_spool(tmp_path / "nope", 0)
    assert not result.ok and "not a directory" in result.detail


def test_spool_that_cannot_be_written() -> None:
    """/proc refuses new files even to root: the check says so instead of raising."""
    result = check_spool(Path("/proc"), 0)
    assert not result.ok
    assert result.detail.startswith("/proc cannot be written:") and "check its owner and mount" in result.detail


def test_spool_is_a_file(tmp_path: Path) -> None:
    """A path that is a file, not a directory (a mistaken mount), fails with what it is."""
    path = tmp_path / "spool"
    path.write_text("", encoding="utf-8")
    result = check_spool(path, 0)
    assert not result.ok and "not a directory" in result.detail


def test_listener_up_and_down() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        up = check_listener("0.0.0.0", port, timeout=2)  # the wildcard is checked over loopback
        assert up.ok and up.detail == f"127.0.0.1:{port} accepts connections"
    down = check_listener("127.0.0.1", port, timeout=2)
    assert not down.ok
    assert "nothing accepts connections" in down.detail and "Connection refused" in down.detail


def test_cli_reports_each_check_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gazex.yaml"
    port = allocate_port()
    config.write_text(
        f"dicom:\n  host: 127.0.0.1\n  port: {port}\nstorage:\n  data_dir: {tmp_path / 'data'}\n", encoding="utf-8"
    )
    assert main(["health", "--config", str(config)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["FAIL", "database"],
        ["FAIL", "spool"],
        ["FAIL", "outbox"],
        ["FAIL", "listener"],
    ]
    assert main(["health", "--config", str(config), "--no-listener"]) == 1
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_cli_bad_configuration_is_an_operator_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gazex.yaml"
    config.write_text("dicom:\n  port: 0\n", encoding="utf-8")
    assert main(["health", "--config", str(config)]) == 2
    assert "dicom.port = 0" in capsys.readouterr().err
