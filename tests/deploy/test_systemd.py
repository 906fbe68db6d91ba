"""``deploy/systemd/``: the unit's hardening and commands, then ``systemd-analyze verify`` and
``systemd-analyze security --offline`` on the real file (plus the GPU drop-in)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.config import load_settings
from tests.conftest import require_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO_ROOT / "deploy" / "systemd"
UNIT = SYSTEMD_DIR / "gazex.service"
GPU_DROP_IN = SYSTEMD_DIR / "gazex.service.d" / "gpu.conf"
HTTPS_DROP_IN = SYSTEMD_DIR / "gazex.service.d" / "https.conf"
INSTALLED_GAZEX = "/opt/gazex/venv/bin/gazex"
#: The most exposure `systemd-analyze security` may report (0 best, 10 worst; below 2 is "OK").
MAX_EXPOSURE = 2.0


def _entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; systemd allows a key more than once."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), f"{path.name}: bad section line {raw!r}"
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def _service(path: Path = UNIT) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for section, key, value in _entries(path):
        if section == "Service":
            values.setdefault(key, []).append(value)
    return values


def _environment(service: dict[str, list[str]]) -> dict[str, str]:
    pairs = [shlex.split(item)[0] for item in service["Environment"]]
    return dict(pair.split("=", 1) for pair in pairs)


def test_the_unit_is_hardened() -> None:
    service = _service()
    single = {key: values[-1] for key, values in service.items()}
    assert single["User"] == single["Group"] == "gazex"
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert single.get(key) == value, f"{key}={single.get(key)!r}, want {value!r}"
    assert set(single["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    # the state directory, where the spool and SQLite live, is the one writable path
    state = f"/var/lib/{single['StateDirectory']}"
    assert service["ReadWritePaths"] == [state] and single["WorkingDirectory"] == state
    assert _environment(service)["HOME"] == state


def test_commands_are_gazex_commands_and_the_configuration_is_named_once() -> None:
    service = _service()
    env = _environment(service)
    start = shlex.split(service["ExecStart"][-1])
    assert start[0] == INSTALLED_GAZEX
    assert build_parser().parse_args(start[1:]).command == "serve"
    [pre] = service["ExecStartPre"]
    check = shlex.split(pre.replace("${GAZEX_CONFIG}", env["GAZEX_CONFIG"]))
    assert check[0] == INSTALLED_GAZEX
    parsed = build_parser().parse_args(check[1:])
    assert (parsed.command, parsed.config_action, str(parsed.file)) == ("config", "check", env["GAZEX_CONFIG"])
    assert env["GAZEX_CONFIG"] == "/etc/gazex/gazex.yaml"
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert service["EnvironmentFile"] == ["-/etc/gazex/gazex.env"]
    # SIGTERM stops the node gracefully; systemd waits longer than the node's own grace period
    assert service["KillSignal"] == ["SIGTERM"]
    stop_seconds = int(service["TimeoutStopSec"][-1])
    assert stop_seconds > load_settings(environ={}).dicom.shutdown_grace_seconds


def test_sysusers_and_env_example_match_the_unit() -> None:
    [user_line] = [
        line
        for line in (SYSTEMD_DIR / "gazex.sysusers.conf").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    kind, name, _id, *rest = shlex.split(user_line)
    assert (kind, name) == ("u", "gazex")
    assert rest[-2:] == ["/var/lib/gazex", "/usr/sbin/nologin"]
    env_lines = [
        line
        for line in (SYSTEMD_DIR / "gazex.env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    environ = dict(line.split("=", 1) for line in env_lines)
    assert all(key.startswith("GAZEX_") and "__" in key for key in environ)
    settings = load_settings(environ=environ)
    assert settings.database_url.startswith("postgresql+psycopg://")


def _installable_copy(tmp_path: Path, *, gpu: bool, https: bool = False) -> Path:
    """The unit (and drop-ins) in a unit directory, its commands pointing at the gazex under test."""
    units = tmp_path / "units"
    units.mkdir()
    gazex = Path(sys.executable).parent / "gazex"
    assert gazex.is_file(), "the gazex console script of this environment"
    (units / UNIT.name).write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED_GAZEX, str(gazex)))
    drop_ins = units / f"{UNIT.name}.d"
    for wanted, drop_in in ((gpu, GPU_DROP_IN), (https, HTTPS_DROP_IN)):
        if wanted:
            drop_ins.mkdir(exist_ok=True)
            (drop_ins / drop_in.name).write_text(drop_in.read_text(encoding="utf-8"))
    return units


def _analyze(units: Path, *args: str) -> subprocess.CompletedProcess[str]:
    systemd_analyze = require_tool("systemd-analyze")
    return subprocess.run(
        [str(systemd_analyze), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"SYSTEMD_UNIT_PATH": f"{units}:", "PATH": "/usr/bin:/bin", "SYSTEMD_LOG_COLOR": "0"},
    )


DROP_IN_SETS = {"plain": (False, False), "gpu-drop-in": (True, False), "https-drop-in": (False, True)}


@pytest.mark.integration
@pytest.mark.parametrize("drop_ins", list(DROP_IN_SETS))
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, drop_ins: str) -> None:
    gpu, https = DROP_IN_SETS[drop_ins]
    units = _installable_copy(tmp_path, gpu=gpu, https=https)
    result = _analyze(units, "verify", str(units / UNIT.name))
    # verify only warns (exit 0) about unknown keys: any output is a finding
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


@pytest.mark.integration
def test_systemd_analyze_verify_reports_a_misspelt_key(tmp_path: Path) -> None:
    units = _installable_copy(tmp_path, gpu=False)
    unit = units / UNIT.name
    unit.write_text(unit.read_text(encoding="utf-8").replace("ProtectHome=yes", "ProtectHom=yes"))
    result = _analyze(units, "verify", str(unit))
    assert "Unknown key 'ProtectHom'" in result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("drop_ins", list(DROP_IN_SETS))
def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path, drop_ins: str) -> None:
    gpu, https = DROP_IN_SETS[drop_ins]
    units = _installable_copy(tmp_path, gpu=gpu, https=https)
    result = _analyze(units, "security", "--offline=true", "--no-pager", str(units / UNIT.name))
    match = re.search(r"Overall exposure level for gazex\.service: ([0-9.]+) (\w+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert match.group(2) == "OK"


def test_the_console_stays_on_loopback_unless_the_https_drop_in_adds_tls(tmp_path: Path) -> None:
    unit_env = {key: value for key, value in _environment(_service()).items() if key.startswith("GAZEX_")}
    unit_env.pop("GAZEX_CONFIG")
    settings = load_settings(environ=unit_env)  # gazex.yaml from `gazex config example` keeps http.host's default
    assert settings.http.enabled and settings.http.loopback_only
    # the drop-in: the key and certificate as credentials, named through %d (the credentials directory)
    drop_in = _service(HTTPS_DROP_IN)
    credentials = dict(item.split(":", 1) for item in drop_in["LoadCredential"])
    assert set(credentials) == {"http-tls.crt", "http-tls.key"}
    assert all(path.startswith("/etc/gazex/tls/") for path in credentials.values())
    (tmp_path / "credentials").mkdir()
    for name in credentials:
        (tmp_path / "credentials" / name).write_text("", encoding="utf-8")
    environ = {
        key: value.replace("%d", str(tmp_path / "credentials"))
        for key, value in _environment(drop_in).items()
        if key.startswith("GAZEX_")
    }
    settings = load_settings(environ={**unit_env, **environ})
    assert not settings.http.loopback_only and settings.http.tls.enabled and not settings.http.allow_insecure_remote
    files = (settings.http.tls.certificate, settings.http.tls.private_key)
    assert {file.name for file in files if file is not None} == set(credentials)
    # the unit lets the HTTP server's sockets through and writes the audit trail in its state directory
    single = {key: values[-1] for key, values in _service().items()}
    assert {"AF_INET", "AF_INET6"} <= set(single["RestrictAddressFamilies"].split())
    assert "IPAddressDeny" not in single and "SocketBindDeny" not in single
    state = Path(f"/var/lib/{single['StateDirectory']}")
    assert single["WorkingDirectory"] == str(state)
    assert (state / settings.audit_path).is_relative_to(state), "a relative audit.path is under WorkingDirectory"


def test_env_example_documents_the_console_settings() -> None:
    text = (SYSTEMD_DIR / "gazex.env.example").read_text(encoding="utf-8")
    commented = dict(
        line.removeprefix("#").split("=", 1) for line in text.splitlines() if line.startswith("#GAZEX_HTTP__")
    )
    assert set(commented) == {
        "GAZEX_HTTP__HOST",
        "GAZEX_HTTP__TLS__CERTIFICATE",
        "GAZEX_HTTP__TLS__PRIVATE_KEY",
        "GAZEX_HTTP__ALLOW_INSECURE_REMOTE",
    }
    unit_text = UNIT.read_text(encoding="utf-8")
    assert "gazex users add admin --role admin" in unit_text
