"""Shared test harness: loopback ports, external DICOM tools, and the real chest radiograph.

Tests that need an external program ask for it through :func:`require_tool` (or the
``dicom_tool`` fixture).  When the program is missing the test is skipped with the reason,
except under ``GAZEX_REQUIRE_INTEGRATION=1`` (set by ``.ci/run``), where it fails instead, so
integration tests can never silently skip in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest

#: Where each external tool comes from, for the skip/fail message.
TOOL_PACKAGES: dict[str, str] = {
    # dcmtk
    "dcmdump": "dcmtk",
    "storescu": "dcmtk",
    "storescp": "dcmtk",
    "echoscu": "dcmtk",
    "dsrdump": "dcmtk",
    "dcmpschk": "dcmtk",
    "dcmp2pgm": "dcmtk",
    "dcmodify": "dcmtk",
    "dcmcjpeg": "dcmtk",
    "img2dcm": "dcmtk",
    # dicom3tools
    "dciodvfy": "dicom3tools",
    "dcentvfy": "dicom3tools",
    # Orthanc
    "Orthanc": "orthanc",
    # systemd (the unit checks)
    "systemd-analyze": "systemd",
    # PostgreSQL client
    "psql": "postgresql-client",
    # certificates for the TLS tests (audit syslog)
    "openssl": "openssl",
    # the real-viewer test (OHIF itself comes from npm: scripts/install-viewer.sh)
    "chromium": "chromium",
    "node": "nodejs",
}

#: Places outside PATH where Debian installs server binaries.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def integration_required() -> bool:
    """True when missing integration prerequisites must fail rather than skip."""
    return os.environ.get("GAZEX_REQUIRE_INTEGRATION", "") == "1"


def missing_prerequisite(reason: str) -> None:
    """Skip the current test with ``reason``, or fail it under GAZEX_REQUIRE_INTEGRATION=1."""
    if integration_required():
        pytest.fail(f"{reason} (GAZEX_REQUIRE_INTEGRATION=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def find_tool(name: str) -> Path | None:
    """The absolute path of an external program, or None when it is not installed."""
    found = shutil.which(name)
    if found is None:
        extra_path = os.pathsep.join(_EXTRA_BIN_DIRS)
        found = shutil.which(name, path=extra_path)
    return Path(found) if found else None


def require_tool(name: str) -> Path:
    """The path of an external program; skips (or fails in CI) when it is missing."""
    path = find_tool(name)
    if path is None:
        package = TOOL_PACKAGES.get(name, "its package")
        missing_prerequisite(f"'{name}' is not installed; install it with: apt-get install -y {package}")
        raise AssertionError("unreachable")  # pragma: no cover
    return path


@pytest.fixture(scope="session", autouse=True)
def gazex_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Exports and engines that tests make go to a temporary cache, never to ~/.cache/gazex."""
    previous = os.environ.get("GAZEX_CACHE_DIR")
    path = tmp_path_factory.mktemp("gazex-cache")
    os.environ["GAZEX_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("GAZEX_CACHE_DIR", None)
    else:
        os.environ["GAZEX_CACHE_DIR"] = previous


@pytest.fixture
def dicom_tool() -> Callable[[str], Path]:
    """Locate an external DICOM tool: ``dicom_tool("storescu")`` -> Path (or skip/fail)."""
    return require_tool


def allocate_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Allocate free loopback ports: ``port = free_port()``; each call gives a new one."""
    given: set[int] = set()

    def allocate() -> int:
        for _ in range(100):
            port = allocate_port()
            if port not in given:
                given.add(port)
                return port
        raise RuntimeError("could not find a free loopback port")

    return allocate


def _testdata(name: str) -> Path:
    try:
        from pydicom.data import get_testdata_file
    except ImportError:  # pragma: no cover - pydicom always has it
        missing_prerequisite("pydicom.data is unavailable")
        raise
    found = get_testdata_file(name)
    if found is None:
        missing_prerequisite(f"the test image {name} is not available; install it with: pip install pydicom-data")
    return Path(str(found))


@pytest.fixture(scope="session")
def chest_cr_path() -> Path:
    """The real chest CR from NEMA WG04 (RG1_UNCR): MONOCHROME1, 1955 x 1841, uncompressed."""
    return _testdata("RG1_UNCR.dcm")


@pytest.fixture(scope="session")
def chest_cr_j2k_path() -> Path:
    """The same chest CR, JPEG 2000 lossless (RG1_J2KR)."""
    return _testdata("RG1_J2KR.dcm")


@pytest.fixture
def chest_cr(chest_cr_path: Path) -> pydicom.Dataset:
    """The uncompressed chest CR, read fresh for each test (so tests may modify it)."""
    return pydicom.dcmread(chest_cr_path)


@pytest.fixture
def chest_cr_j2k(chest_cr_j2k_path: Path) -> pydicom.Dataset:
    """The JPEG 2000 chest CR, read fresh for each test."""
    return pydicom.dcmread(chest_cr_j2k_path)


POSTGRES_URL_ENV = "GAZEX_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a reachable PostgreSQL server (skip/fail when there is none)."""
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        missing_prerequisite(f"PostgreSQL is not reachable at {url} ({type(exc).__name__}: {exc})")
    yield url


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A SQLAlchemy URL of a fresh, empty PostgreSQL database, dropped after the test.

    Each test gets its own database, so tests (and parallel developers' runs) never share
    state through the server.
    """
    import uuid

    import sqlalchemy

    name = f"gazex_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.engine.make_url(postgres_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
