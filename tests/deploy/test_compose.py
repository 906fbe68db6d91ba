"""``deploy/compose/``, checked without a Docker engine.

Each file is interpolated with ``.env.example`` (passwords filled in) as Compose does, then
validated against the Compose Specification's JSON schema (vendored by ``check-jsonschema``).
Then the parts are checked against each other: services, networks and volumes that are
referenced exist, every bind-mounted file exists, images are pinned, the gateway's
configuration (file + the environment compose gives it) is valid, and Orthanc, the gateway
and PostgreSQL agree on host names, ports, AE titles and credentials.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url

from gateway.cli import build_parser
from gateway.config import load_settings
from tests.deploy.compose_interpolation import InterpolationError, interpolate, read_env_file

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
COMPOSE_FILES = ("compose.yaml", "compose.gpu.yaml", "compose.tls.yaml")
#: Sequences that Compose merges (appends) across files instead of replacing them.
MERGED_SEQUENCES = frozenset({"ports", "secrets", "volumes", "expose"})
PASSWORDS = {"POSTGRES_PASSWORD": "pg-secret", "ORTHANC_ADMIN_PASSWORD": "orthanc-secret"}


def _env() -> dict[str, str]:
    values = read_env_file((COMPOSE_DIR / ".env.example").read_text(encoding="utf-8"))
    return {**values, **PASSWORDS}


def _raw(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / name).read_text(encoding="utf-8"))
    return loaded


def _load(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = interpolate(_raw(name), _env() if env is None else env)
    return result


def _merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's merge of an override file: mappings merge, ports/secrets/volumes append, other values are replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = _merge(base[name], value, name) if name in base else value
        return merged
    if key in MERGED_SEQUENCES and isinstance(base, list) and isinstance(override, list):
        return [*base, *(item for item in override if item not in base)]
    return copy.deepcopy(override)


def _merged(*names: str) -> dict[str, Any]:
    document = _load(COMPOSE_FILES[0])
    for name in names:
        document = _merge(document, _load(name))
    return document


def _schema() -> dict[str, Any]:
    resource = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return schema


@pytest.mark.parametrize("name", [*COMPOSE_FILES, "merged"])
def test_files_follow_the_compose_specification(name: str) -> None:
    document = _merged(*COMPOSE_FILES[1:]) if name == "merged" else _load(name)
    validator = jsonschema.Draft202012Validator(_schema(), format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_catches_a_mistake() -> None:
    """The schema check is not vacuous: a misspelt key fails it."""
    document = _load("compose.yaml")
    document["services"]["gazex"]["restart_policy"] = "always"
    validator = jsonschema.Draft202012Validator(_schema())
    assert any("restart_policy" in error.message for error in validator.iter_errors(document))


def test_every_variable_is_in_env_example_and_passwords_are_required() -> None:
    documented = read_env_file((COMPOSE_DIR / ".env.example").read_text(encoding="utf-8"))
    used: set[str] = set()
    for name in COMPOSE_FILES:
        interpolate(_raw(name), _env(), used)
    assert used == set(documented), f"undocumented: {used - set(documented)}, unused: {set(documented) - used}"
    for password in PASSWORDS:
        assert documented[password] == "", f"{password} must have no default"
        with pytest.raises(InterpolationError, match=password):
            _load("compose.yaml", {**_env(), password: ""})


def test_references_resolve_and_mounted_files_exist() -> None:
    document = _merged(*COMPOSE_FILES[1:])
    services = document["services"]
    networks = set(document.get("networks", {}))
    volumes = set(document.get("volumes", {}))
    secrets = document.get("secrets", {})
    used_volumes: set[str] = set()
    used_secrets: set[str] = set()
    for name, service in services.items():
        for secret in service.get("secrets", []):
            assert secret in secrets, f"{name} uses undeclared secret {secret}"
            used_secrets.add(secret)
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        for network in service.get("networks", []):
            assert network in networks, f"{name} uses undeclared network {network}"
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            assert target.startswith("/")
            if source.startswith((".", "/")):
                path = (COMPOSE_DIR / source).resolve()
                assert path.exists(), f"{name} mounts {source}, which does not exist"
                assert str(path).startswith(str(REPO_ROOT)), f"{name} mounts {source} from outside the repository"
            else:
                assert source in volumes, f"{name} uses undeclared volume {source}"
                used_volumes.add(source)
        if "build" in service:
            context = (COMPOSE_DIR / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file()
    assert used_volumes == volumes, f"declared but unused volumes: {volumes - used_volumes}"
    assert used_secrets == set(secrets), f"declared but unused secrets: {set(secrets) - used_secrets}"
    for secret in secrets.values():
        # the site's own files, named in .env; the default place is kept out of git
        assert secret["file"].startswith("./tls/")
        assert set(secret) == {"file"}
    gitignore = (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "/deploy/compose/tls/" in gitignore and "/deploy/compose/.env" in gitignore


def test_images_are_pinned_and_the_gateway_image_matches_the_version() -> None:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    for name in COMPOSE_FILES:
        for service_name, service in _load(name)["services"].items():
            image = service.get("image")
            if image is None:
                continue
            _, _, tag = image.rpartition(":")
            assert tag and tag != "latest" and "/" not in tag, f"{service_name}: {image} is not pinned"
            if service_name == "gazex":
                variant = "gpu" if name == "compose.gpu.yaml" else "cpu"
                assert image == f"gazex-gateway:{version}-{variant}"


def _gazex_settings(service: dict[str, Any]) -> Any:
    environment = {key: str(value) for key, value in service["environment"].items() if key != "GAZEX_CONFIG"}
    config_mounts = [
        m.split(":")[0] for m in service["volumes"] if m.split(":")[1] == service["environment"]["GAZEX_CONFIG"]
    ]
    assert len(config_mounts) == 1, "the file GAZEX_CONFIG names is mounted"
    return load_settings(COMPOSE_DIR / config_mounts[0], environ=environment)


def test_the_gateway_configuration_is_valid_and_agrees_with_the_other_services() -> None:
    env = _env()
    document = _load("compose.yaml")
    services = document["services"]
    gazex, orthanc, postgres = services["gazex"], services["orthanc"], services["postgres"]
    settings = _gazex_settings(gazex)

    # the gateway: its AE title, its callers, its port, its data volume, its database
    assert settings.dicom.ae_titles == [env["GAZEX_AET"]]
    assert settings.dicom.reject_unknown_callers
    assert [(c.ae_title, c.host) for c in settings.dicom.allowed_callers] == [(env["ORTHANC_AET"], "orthanc")]
    published, container = gazex["ports"][0].rsplit(":", 1)
    assert int(container) == settings.dicom.port and published == env["GAZEX_DICOM_PORT"]
    assert f"gazex-data:{settings.storage.data_dir}" in gazex["volumes"]
    url = make_url(settings.database_url)
    assert url.host == "postgres" and url.host in services
    assert url.username == postgres["environment"]["POSTGRES_USER"]
    assert url.password == postgres["environment"]["POSTGRES_PASSWORD"] == PASSWORDS["POSTGRES_PASSWORD"]
    assert url.database == postgres["environment"]["POSTGRES_DB"]
    assert set(gazex["networks"]) & set(postgres["networks"])
    assert gazex["depends_on"]["postgres"]["condition"] == "service_healthy"
    grace = int(gazex["stop_grace_period"].removesuffix("s"))
    assert grace > settings.dicom.shutdown_grace_seconds
    assert build_parser().parse_args(gazex["healthcheck"]["test"][2:]).command == "health"
    assert gazex["healthcheck"]["test"][:2] == ["CMD", "gazex"]
    assert gazex["read_only"] and gazex["cap_drop"] == ["ALL"] and "no-new-privileges:true" in gazex["security_opt"]

    # Orthanc: reaches the gateway by its service name, port and AE title
    orthanc_env = orthanc["environment"]
    assert orthanc_env["GAZEX_HOST"] == "gazex" and set(orthanc["networks"]) & set(gazex["networks"])
    assert int(orthanc_env["GAZEX_PORT"]) == settings.dicom.port
    assert orthanc_env["GAZEX_AET"] == settings.dicom.ae_title
    assert orthanc_env["ORTHANC_AET"] == env["ORTHANC_AET"]
    assert orthanc_env["ORTHANC_ADMIN_PASSWORD"] == PASSWORDS["ORTHANC_ADMIN_PASSWORD"]
    [config_path] = orthanc["command"]
    mounts = {m.split(":")[1]: (COMPOSE_DIR / m.split(":")[0]).resolve() for m in orthanc["volumes"]}
    assert mounts[config_path] == REPO_ROOT / "deploy" / "orthanc" / "orthanc.json"
    orthanc_config = json.loads(mounts[config_path].read_text(encoding="utf-8"))
    for script in orthanc_config["LuaScripts"]:  # relative paths are relative to the configuration file
        in_container = str(Path(config_path).parent / script)
        assert mounts[in_container] == REPO_ROOT / "deploy" / "orthanc" / script
    assert f"orthanc-data:{orthanc_env['ORTHANC_STORAGE_DIR']}" in orthanc["volumes"]
    assert orthanc["ports"][1].startswith("127.0.0.1:"), "Orthanc's web interface is published on loopback only"
    # the results go back to Orthanc: its service name, its DICOM port, its AE title, from the AE it knows
    [destination] = settings.destinations.values()
    assert destination.host == "orthanc" and set(orthanc["networks"]) & set(gazex["networks"])
    assert destination.port == orthanc_config["DicomPort"] == int(orthanc["ports"][0].rsplit(":", 1)[1])
    assert destination.ae_title == env["ORTHANC_AET"]
    assert (destination.calling_ae_title or settings.dicom.ae_title) == orthanc_config["DicomModalities"]["gazex"][
        "AET"
    ].replace("${GAZEX_AET:-GAZEX}", orthanc_env["GAZEX_AET"])
    placeholders = set(re.findall(r"\$\{([A-Z_]+)", mounts[config_path].read_text(encoding="utf-8")))
    assert placeholders <= set(orthanc_env), (
        f"Orthanc placeholders compose leaves unset: {placeholders - set(orthanc_env)}"
    )


def test_triton_is_an_optional_profile_on_a_gpu() -> None:
    services = _load("compose.yaml")["services"]
    assert _gazex_settings(services["gazex"]).model.backend == "torch"
    with_triton = _load("compose.yaml", {**_env(), "GAZEX_MODEL_BACKEND": "triton"})["services"]
    model = _gazex_settings(with_triton["gazex"]).model
    assert model.backend == "triton"
    url = urlsplit(model.triton_url)
    assert url.hostname in services and url.port == 8000
    assert set(services[url.hostname]["networks"]) & set(services["gazex"]["networks"])
    assert [name for name, service in services.items() if "profiles" in service] == ["triton"]
    triton = services["triton"]
    assert triton["profiles"] == ["triton"]
    [device] = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert "--model-repository=/models" in triton["command"]
    assert any(mount.endswith(":/models:ro") for mount in triton["volumes"])
    gpu = _load("compose.gpu.yaml")["services"]["gazex"]
    assert gpu["build"]["args"]["VARIANT"] == "gpu"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A}", "a"),
        ("$A/x", "a/x"),
        ("$$A", "$A"),
        ("${E:-d}", "d"),
        ("${E-d}", ""),
        ("${U-d}", "d"),
        ("${A:+x}", "x"),
        ("${E:+x}", ""),
        ("${E+x}", "x"),
        ("${U+x}", ""),
        ("${E?m}", ""),
    ],
)
def test_interpolation_follows_compose_rules(text: str, expected: str) -> None:
    from tests.deploy.compose_interpolation import interpolate_text

    assert interpolate_text(text, {"A": "a", "E": ""}) == expected


def test_interpolation_refuses_a_required_empty_variable() -> None:
    from tests.deploy.compose_interpolation import interpolate_text

    with pytest.raises(InterpolationError, match="E: give E"):
        interpolate_text("${E:?give E}", {"E": ""})


def _published(port: str) -> tuple[str, str, int]:
    """(host address, host port, container port) of a ``[ADDRESS:]HOST:CONTAINER`` entry."""
    parts = port.split(":")
    address = parts[0] if len(parts) == 3 else "0.0.0.0"
    return address, parts[-2], int(parts[-1])


def _settings_with_secrets(document: dict[str, Any], tmp_path: Path) -> Any:
    """The gateway's settings, with each secret's /run/secrets/<name> a throw-away file (as Compose mounts them)."""
    gazex = copy.deepcopy(document["services"]["gazex"])
    for secret in gazex.get("secrets", []):
        assert secret in document["secrets"]
        file = tmp_path / secret
        file.write_text("", encoding="utf-8")
        for key, value in gazex["environment"].items():
            if value == f"/run/secrets/{secret}":
                gazex["environment"][key] = str(file)
    assert not any(str(value).startswith("/run/secrets/") for value in gazex["environment"].values())
    return _gazex_settings(gazex)


@pytest.mark.parametrize("overlay", ["plain", "compose.tls.yaml"])
def test_the_console_is_on_loopback_or_behind_tls(overlay: str, tmp_path: Path) -> None:
    env = _env()
    document = _merged() if overlay == "plain" else _merged(overlay)
    gazex = document["services"]["gazex"]
    settings = _settings_with_secrets(document, tmp_path)
    assert settings.http.enabled and settings.http.host == "0.0.0.0"
    published = [_published(port) for port in gazex["ports"] if _published(port)[2] == settings.http.port]
    assert ("127.0.0.1", env["GAZEX_HTTP_PORT"], settings.http.port) in published
    beyond_loopback = [entry for entry in published if entry[0] != "127.0.0.1"]
    if overlay == "plain":
        # plain HTTP, published on the host's loopback only: allow_insecure_remote covers the container network
        assert not settings.http.tls.enabled and settings.http.allow_insecure_remote
        assert not beyond_loopback
    else:
        assert settings.http.tls.enabled and not settings.http.allow_insecure_remote
        assert beyond_loopback == [("0.0.0.0", env["GAZEX_HTTPS_PORT"], settings.http.port)]
        secrets = document["secrets"]
        assert secrets["gazex-http-certificate"]["file"] == env["GAZEX_HTTP_TLS_CERTIFICATE"]
        assert secrets["gazex-http-key"]["file"] == env["GAZEX_HTTP_TLS_PRIVATE_KEY"]
    # the rule gazex serve enforces, restated for the host: beyond loopback means TLS
    if beyond_loopback:
        assert settings.http.tls.enabled
    # the container's health check stays `gazex health`, which needs no HTTP client
    assert gazex["healthcheck"]["test"][:3] == ["CMD", "gazex", "health"]


def test_the_first_admin_command_is_documented_and_parses() -> None:
    text = (COMPOSE_DIR / "compose.yaml").read_text(encoding="utf-8")
    [command] = re.findall(r"docker compose exec gazex (gazex users add .+)$", text, flags=re.MULTILINE)
    argv = command.split()
    parsed = build_parser().parse_args(argv[1:])
    assert (parsed.command, parsed.role) == ("users", "admin")
