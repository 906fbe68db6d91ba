"""``deploy/docker/Dockerfile``, checked without a Docker engine.

The file is parsed by BuildKit's own parser (the ``dockerfile`` package wraps it); then each
variant's stage graph is resolved, every ``COPY`` source is checked to exist and to be in the
build context (``Dockerfile.dockerignore``), and every command the image runs
(``ENTRYPOINT`` + ``CMD``, ``HEALTHCHECK``) is parsed by the real ``gazex`` command line.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile
import pytest

from gateway.cli import build_parser, main
from gateway.config import ConfigError, load_settings
from tests.deploy import dockerignore

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile"
IGNORE_FILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile.dockerignore"
VARIANTS = ("cpu", "gpu")


@dataclass
class Stage:
    name: str
    base: str  # as written, with ${ARG}s
    instructions: list[dockerfile.Command] = field(default_factory=list)

    def all(self, cmd: str) -> list[dockerfile.Command]:
        return [instruction for instruction in self.instructions if instruction.cmd == cmd]

    def last(self, cmd: str) -> dockerfile.Command:
        found = self.all(cmd)
        assert found, f"stage {self.name} has no {cmd}"
        return found[-1]


@dataclass
class ParsedDockerfile:
    global_args: dict[str, str]
    stages: dict[str, Stage]


def _parse() -> ParsedDockerfile:
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            assert len(command.value) == 3 and command.value[1].upper() == "AS", f"unnamed stage: {command.original}"
            current = Stage(command.value[2], command.value[0])
            assert current.name not in stages, f"stage {current.name} defined twice"
            stages[current.name] = current
        elif current is None:
            assert command.cmd == "ARG", f"only ARG may precede the first FROM: {command.original}"
            name, _, default = command.value[0].partition("=")
            global_args[name] = default
        else:
            current.instructions.append(command)
    return ParsedDockerfile(global_args, stages)


PARSED = _parse()


def _expand(text: str, args: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in args, f"${{{name}}} is not a declared build argument"
        return args[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def _stages_for(variant: str) -> list[str]:
    """The stages a build of ``variant`` runs, final stage last."""
    args = {**PARSED.global_args, "VARIANT": variant}
    final = list(PARSED.stages)[-1]
    needed: list[str] = []

    def visit(name: str) -> None:
        if name in needed:
            return
        stage = PARSED.stages[name]
        base = _expand(stage.base, args)
        if base in PARSED.stages:
            visit(base)
        for copy in stage.all("COPY"):
            for flag in copy.flags:
                if flag.startswith("--from="):
                    source = _expand(flag.removeprefix("--from="), args)
                    assert source in PARSED.stages, f"COPY {flag} in {name} names no stage"
                    visit(source)
        needed.append(name)

    visit(final)
    return needed


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_builds_from_pinned_images_through_its_own_stages(variant: str) -> None:
    stages = _stages_for(variant)
    other = "gpu" if variant == "cpu" else "cpu"
    assert stages == [f"{variant}-base", f"{variant}-build", "venv", "runtime"]
    assert not any(name.startswith(other) for name in stages)
    args = {**PARSED.global_args, "VARIANT": variant}
    images = [_expand(PARSED.stages[name].base, args) for name in stages if PARSED.stages[name].base[0] == "$"]
    images = [image for image in images if image not in PARSED.stages]
    assert len(images) == 1
    [image] = images
    repository, _, tag = image.rpartition(":")
    assert repository and tag and tag != "latest", f"{image} must name a fixed tag"
    expected = {"cpu": "python:3.11-slim", "gpu": "nvidia/cuda:"}[variant]
    assert image.startswith(expected)
    if variant == "gpu":
        assert "runtime" in tag and "devel" not in tag, "the GPU variant runs on a CUDA runtime image"


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    patterns = dockerignore.parse(IGNORE_FILE.read_text(encoding="utf-8"))
    checked = 0
    for stage in PARSED.stages.values():
        for copy in stage.all("COPY"):
            if any(flag.startswith("--from=") for flag in copy.flags):
                continue
            *sources, _destination = copy.value
            for source in sources:
                assert "$" not in source and ".." not in source, f"COPY source {source!r} must be a plain path"
                path = REPO_ROOT / source
                assert path.exists(), f"COPY {source} (stage {stage.name}): no such path in the repository"
                files = dockerignore.context_files(REPO_ROOT, patterns, source)
                assert files, f"COPY {source}: Dockerfile.dockerignore leaves it out of the build context"
                checked += 1
    assert checked >= 9
    # what the package needs is in the context; caches and virtual environments are not
    kept = dockerignore.context_files(REPO_ROOT, patterns, "gateway")
    assert "gateway/cli/health.py" in kept and "gateway/db/migrations/env.py" in kept
    assert not any("__pycache__" in name for name in kept)
    assert dockerignore.excluded(patterns, ".venv/bin/python")
    assert dockerignore.excluded(patterns, "tests/conftest.py")
    assert dockerignore.excluded(patterns, "var/gazex.db")
    assert not dockerignore.excluded(patterns, "deploy/docker/gazex.yaml")
    assert dockerignore.excluded(patterns, "deploy/helm/gazex-gateway/values.yaml")


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = dockerignore.parse("*\n!src/\nsrc/**/*.pyc\n!src/keep.pyc\n# comment\n")
    assert dockerignore.excluded(patterns, "README.md")
    assert not dockerignore.excluded(patterns, "src/a/b.py")
    assert dockerignore.excluded(patterns, "src/a/b.pyc")
    assert dockerignore.excluded(patterns, "src/b.pyc")  # "**/" matches zero directories
    assert not dockerignore.excluded(patterns, "src/keep.pyc")
    assert dockerignore.excluded(patterns, "srcx/file")


def test_the_image_runs_unprivileged_and_checks_its_health() -> None:
    runtime = PARSED.stages["runtime"]
    user = runtime.last("USER").value[0]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit() and int(gid) != 0, "a numeric non-root user"
    creation = " ".join(" ".join(run.value) for run in runtime.all("RUN"))
    assert f"useradd --system --uid {uid}" in creation and f"groupadd --system --gid {gid}" in creation
    names = [instruction.cmd for instruction in runtime.instructions]
    assert names.index("USER") > max(i for i, name in enumerate(names) if name in ("RUN", "COPY"))

    healthcheck = runtime.last("HEALTHCHECK")
    assert healthcheck.json and healthcheck.value[0] == "CMD", "exec-form HEALTHCHECK CMD"
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in healthcheck.flags)
    assert {"interval", "timeout", "start-period", "retries"} <= set(flags)
    health = list(healthcheck.value[1:])
    entrypoint = list(runtime.last("ENTRYPOINT").value)
    command = list(runtime.last("CMD").value)
    scripts = _pyproject()["project"]["scripts"]  # type: ignore[index]
    for argv in (health, entrypoint + command):
        assert argv[0] in scripts and scripts[argv[0]] == "gateway.cli:main", f"{argv[0]} is not our console script"
        parsed = build_parser().parse_args(argv[1:])
        assert callable(parsed.handler)
    assert health[1:] == ["health"] and command == ["serve"]


def _image_config() -> Path:
    runtime = PARSED.stages["runtime"]
    config_copies = [copy for copy in runtime.all("COPY") if copy.value[-1] == _env(runtime)["GAZEX_CONFIG"]]
    assert len(config_copies) == 1
    return REPO_ROOT / config_copies[0].value[0]


def _with_mounted_tls(source: Path, tmp_path: Path) -> Path:
    """The image's configuration with its /etc/gazex/tls files pointed at throw-away ones (the mount)."""
    text = source.read_text(encoding="utf-8")
    for name in ("tls.crt", "tls.key"):
        assert f"/etc/gazex/tls/{name}" in text
        (tmp_path / name).write_text("", encoding="utf-8")
        text = text.replace(f"/etc/gazex/tls/{name}", str(tmp_path / name))
    config = tmp_path / "gazex.yaml"
    config.write_text(text, encoding="utf-8")
    return config


def test_the_image_configuration_is_valid_and_named_by_gazex_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    runtime = PARSED.stages["runtime"]
    env = _env(runtime)
    source = _image_config()
    config = _with_mounted_tls(source, tmp_path)
    assert main(["config", "check", str(config)]) == 0, capsys.readouterr().err
    assert "storage:\n  data_dir: /var/lib/gazex" in source.read_text(encoding="utf-8")
    volumes = runtime.last("VOLUME").value
    assert "/var/lib/gazex" in volumes and runtime.last("WORKDIR").value == ("/var/lib/gazex",)
    settings = load_settings(config, environ={})
    exposed = runtime.last("EXPOSE").value
    assert exposed == (str(settings.dicom.port), str(settings.http.port))
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1", "no model hub at run time"
    assert env["PATH"].startswith("/opt/gazex/bin:")


def _env(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        pairs = instruction.value
        for index in range(0, len(pairs), 2):
            values[pairs[index]] = pairs[index + 1]
    return values


@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_comes_from_the_variants_wheel_index_at_the_pinned_version(variant: str) -> None:
    build = PARSED.stages[f"{variant}-build"]
    runs = [" ".join(run.value) for run in build.all("RUN")]
    index_arg = {"cpu": "TORCH_CPU_INDEX", "gpu": "TORCH_CUDA_INDEX"}[variant]
    [torch_install] = [run for run in runs if '"torch==${TORCH_VERSION}"' in run]
    assert f'--index-url "${{{index_arg}}}"' in torch_install
    index = PARSED.global_args[index_arg]
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/(cpu|cu\d{3})", index)
    assert index.endswith("/cpu") == (variant == "cpu")
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    [pinned] = re.findall(r'"torch==([0-9.]+)"', makefile)
    assert PARSED.global_args["TORCH_VERSION"] == pinned, "the image's torch differs from the Makefile's"
    # torch is installed before the project, so pip keeps it instead of pulling another build
    assert runs.index(torch_install) < next(i for i, run in enumerate(runs) if '"/src[' in run)
    extras = PARSED.global_args[{"cpu": "CPU_EXTRAS", "gpu": "GPU_EXTRAS"}[variant]].split(",")
    declared = _pyproject()["project"]["optional-dependencies"]  # type: ignore[index]
    assert set(extras) <= set(declared), f"unknown extras {set(extras) - set(declared)}"
    assert ("gpu" in extras) == (variant == "gpu")


def test_no_remote_add_and_shell_free_entrypoint() -> None:
    for stage in PARSED.stages.values():
        assert not stage.all("ADD"), "use COPY; ADD of URLs or archives hides what goes in"
        for run in stage.all("RUN"):
            text = " ".join(run.value)
            assert "curl " not in text and "wget " not in text, f"no downloads outside package managers: {text}"
            assert "huggingface" not in text.lower()
    runtime = PARSED.stages["runtime"]
    assert runtime.last("ENTRYPOINT").json and runtime.last("CMD").json
    assert runtime.last("STOPSIGNAL").value == ("SIGTERM",)
    assert shlex.split(" ".join(runtime.last("ENTRYPOINT").value)) == ["gazex"]


def test_the_image_serves_the_console_beyond_loopback_only_over_tls(tmp_path: Path) -> None:
    """The container listens on every address, so the certificate is required; the documented
    alternatives (plain HTTP behind a TLS proxy, no HTTP at all) are valid as written."""
    source = _image_config()
    settings = load_settings(_with_mounted_tls(source, tmp_path), environ={})
    assert settings.http.enabled and not settings.http.loopback_only
    assert settings.http.tls.enabled and not settings.http.allow_insecure_remote
    # without the mounted files the gateway refuses to start, naming them
    with pytest.raises(ConfigError, match=re.escape("/etc/gazex/tls/tls.crt")):
        load_settings(source, environ={})
    text = source.read_text(encoding="utf-8")
    alternatives = re.findall(r"^#\s+((?:GAZEX_HTTP__\w+=\S+ ?)+)$", text, flags=re.MULTILINE)
    assert len(alternatives) == 2, alternatives
    for line in alternatives:
        environ = dict(pair.split("=", 1) for pair in line.split())
        settings = load_settings(source, environ=environ)
        assert not settings.http.tls.enabled
        assert settings.http.allow_insecure_remote or not settings.http.enabled
    # plain HTTP beyond loopback without saying so is refused
    refused = {"GAZEX_HTTP__TLS__CERTIFICATE": "null", "GAZEX_HTTP__TLS__PRIVATE_KEY": "null"}
    with pytest.raises(ConfigError, match="without TLS"):
        load_settings(source, environ=refused)
