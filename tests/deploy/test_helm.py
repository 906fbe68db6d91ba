"""``deploy/helm/gazex-gateway``: ``helm lint``, ``helm template`` and the Kubernetes API schemas.

helm itself renders the chart (``make tools`` installs it; see scripts/install-helm.sh), with
the default values and with ``ci/hospital-values.yaml``.  Every rendered object is validated,
strictly (no unknown fields), against the Kubernetes OpenAPI schemas of the oldest version
the chart supports and of the newest one ``kubernetes-validate`` ships.  Then the objects are
checked against each other and against the image: the ConfigMap is a valid gazex
configuration with the environment the pod gets, ports, labels and mounts line up, and the
pod runs as the image's unprivileged user.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.cli import build_parser
from gateway.config import load_settings
from tests.conftest import find_tool, missing_prerequisite

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "gazex-gateway"
HOSPITAL_VALUES = CHART / "ci" / "hospital-values.yaml"
INGRESS_VALUES = CHART / "ci" / "ingress-values.yaml"
RELEASE = "gazex-gateway"


def _helm() -> Path:
    beside_python = Path(sys.executable).parent / "helm"
    if beside_python.is_file():
        return beside_python
    found = find_tool("helm")
    if found is None:
        missing_prerequisite("helm is not installed; run `make tools` (scripts/install-helm.sh)")
        raise AssertionError("unreachable")  # pragma: no cover
    return found


def _run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(_helm()), *args], capture_output=True, text=True, timeout=120, check=False)


def _render(*values: str, **sets: str) -> list[dict[str, Any]]:
    args = ["template", RELEASE, str(CHART), "--namespace", "radiology"]
    for path in values:
        args += ["-f", path]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    result = _run_helm(*args)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


VALUE_SETS = {"defaults": (), "hospital": (str(HOSPITAL_VALUES),), "ingress": (str(INGRESS_VALUES),)}
#: Kinds of custom resources (not in the Kubernetes API schemas); checked by their own tests.
CUSTOM_KINDS = {"ServiceMonitor"}


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, _render(*VALUE_SETS[request.param])


def _one(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def _chart() -> dict[str, Any]:
    chart: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    return chart


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_helm_lint_strict(values: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for path in VALUE_SETS[values]:
        args += ["-f", path]
    result = _run_helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def _kubernetes_versions() -> list[str]:
    oldest = re.search(r"(\d+\.\d+)", _chart()["kubeVersion"])
    assert oldest is not None
    return [f"{oldest.group(1)}.0", kubernetes_validate.latest_version()]


def test_every_object_matches_the_kubernetes_schemas(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = rendered
    kinds = sorted(document["kind"] for document in documents)
    expected = ["ConfigMap", "Job", "Service", "Service", "ServiceAccount", "StatefulSet"]
    assert set(expected) <= set(kinds)
    for document in documents:
        if document["kind"] in CUSTOM_KINDS:
            continue
        for version in _kubernetes_versions():
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = "/".join(map(str, exc.path))
                pytest.fail(
                    f"{document['kind']} {document['metadata']['name']} on Kubernetes {version}: {path}: {exc.message}"
                )


def test_the_schema_check_is_strict() -> None:
    """A misspelt field is caught, so the check above is not vacuous."""
    documents = _render()
    statefulset = _one(documents, "StatefulSet")
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"tcpSocket": {"port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, _kubernetes_versions()[-1], strict=True)


def _container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _one(documents, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _pod_environment(container: dict[str, Any]) -> dict[str, str]:
    """The GAZEX_* variables the pod gets, with Secret and downward-API values filled in as the cluster would."""
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item["valueFrom"]:
            env[item["name"]] = "postgresql+psycopg://gazex:secret@postgres.db.svc:5432/gazex"
        elif item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name":
            env[item["name"]] = f"{RELEASE}-0"
    # $(NAME) refers to a variable defined earlier, as the kubelet expands it
    for name, value in env.items():
        env[name] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], value)
    return env


def test_the_configmap_is_a_valid_gazex_configuration_with_the_pod_environment(
    rendered: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    name, documents = rendered
    container = _container(documents)
    env = _pod_environment(container)
    config_map = _one(documents, "ConfigMap")
    [config_mount] = [m for m in container["volumeMounts"] if m["mountPath"] == env["GAZEX_CONFIG"]]
    assert config_mount["subPath"] in config_map["data"] and config_mount.get("readOnly")
    config_file = tmp_path / "gazex.yaml"
    config_file.write_text(config_map["data"][config_mount["subPath"]], encoding="utf-8")
    environ = {key: value for key, value in env.items() if key != "GAZEX_CONFIG"}
    if name == "hospital":
        # the TLS files live in the Secret the chart mounts; point at throw-away ones here
        text = config_file.read_text(encoding="utf-8")
        for file in ("tls/tls.crt", "tls/tls.key", "tls/ca.crt", "http-tls/tls.crt", "http-tls/tls.key"):
            (tmp_path / file).parent.mkdir(exist_ok=True)
            (tmp_path / file).write_text("", encoding="utf-8")
            text = text.replace(f"/etc/gazex/{file}", str(tmp_path / file))
        config_file.write_text(text, encoding="utf-8")
    settings = load_settings(config_file, environ=environ)
    assert str(settings.storage.data_dir) == "/var/lib/gazex"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.database.upgrade_on_start is False  # the migration Job does it
    assert settings.storage.node_id == f"{RELEASE}-0"  # each pod's own lock and incoming folder
    assert settings.destinations, "results need somewhere to go"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["dicom"] == settings.dicom.port
    # the rule gazex serve enforces: beyond loopback only with TLS or IT's allow_insecure_remote
    assert settings.http.enabled
    assert settings.http.loopback_only or settings.http.tls.enabled or settings.http.allow_insecure_remote
    assert ("http" in ports) == (not settings.http.loopback_only)
    if "http" in ports:
        assert ports["http"] == settings.http.port and settings.http.host == "0.0.0.0"
    # each pod appends to its own audit file, on the shared data volume
    assert settings.audit_path == Path(f"/var/lib/gazex/audit/{RELEASE}-0.log")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "/var/lib/gazex" in mounts and "/tmp" in mounts
    if name == "hospital":
        assert settings.dicom.tls.enabled and settings.dicom.tls.require_client_certificate
        assert settings.dicom.tls.minimum_version == "1.3"
        assert mounts["/etc/gazex/tls"]["readOnly"]
        assert "/models" in mounts and mounts["/models"]["readOnly"]
        assert settings.model.path.startswith("/models/") and settings.model.backend == "tensorrt"
        assert set(settings.destinations) == {"pacs", "research-archive"}
        assert settings.http.tls.enabled and not settings.http.allow_insecure_remote
        assert mounts["/etc/gazex/http-tls"]["readOnly"] and settings.http.session_minutes == 240
    else:
        assert not settings.dicom.tls.enabled and "/etc/gazex/tls" not in mounts
        assert not settings.http.tls.enabled and "/etc/gazex/http-tls" not in mounts
        assert settings.http.loopback_only == (name == "defaults")
        assert settings.http.allow_insecure_remote == (name == "ingress")


def test_pods_run_unprivileged_as_the_images_user(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = rendered
    dockerfile = (REPO_ROOT / "deploy" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    [image_user] = re.findall(r"^USER (\d+):(\d+)$", dockerfile, flags=re.MULTILINE)
    for kind in ("StatefulSet", "Job"):
        pod = _one(documents, kind)["spec"]["template"]["spec"]
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True
        assert (str(security["runAsUser"]), str(security["runAsGroup"])) == image_user
        assert security["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "memory" in container["resources"]["limits"]


def test_probes_and_commands_are_real_gazex_commands(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, documents = rendered
    container = _container(documents)
    assert build_parser().parse_args(container["args"]).command == "serve"
    assert container["startupProbe"]["tcpSocket"]["port"] == "dicom"
    if name == "defaults":  # the console on loopback: the kubelet cannot reach it
        readiness = container["readinessProbe"]["exec"]["command"]
        assert readiness[0] == "gazex"
        assert build_parser().parse_args(readiness[1:]).command == "health"
        assert container["livenessProbe"]["tcpSocket"]["port"] == "dicom"
    else:
        scheme = "HTTPS" if name == "hospital" else "HTTP"
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "http", "scheme": scheme}
        from gateway.web.app import PUBLIC_PATHS

        assert {"/healthz", "/readyz"} <= PUBLIC_PATHS, "the kubelet has no login"
    job = _one(documents, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    [migrate] = job["spec"]["template"]["spec"]["containers"]
    assert build_parser().parse_args(migrate["args"]).db_action == "upgrade"


def test_services_select_the_pods_and_reach_the_dicom_port(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, documents = rendered
    statefulset = _one(documents, "StatefulSet")
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    service = _one(documents, "Service", RELEASE)
    headless = _one(documents, "Service", f"{RELEASE}-headless")
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None"
    for svc in (service, headless):
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        assert svc["spec"]["ports"][0]["targetPort"] == "dicom"
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    if name == "hospital":
        assert service["spec"]["type"] == "LoadBalancer"
        assert service["spec"]["externalTrafficPolicy"] == "Local"
        assert service["spec"]["loadBalancerSourceRanges"] == ["10.20.0.0/24"]
        policy = _one(documents, "NetworkPolicy")
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert _container(documents)["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert statefulset["spec"]["replicas"] == 3


def test_image_tag_follows_the_project_version(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, documents = rendered
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert _chart()["appVersion"] == version
    variant = "gpu" if name == "hospital" else "cpu"
    assert _container(documents)["image"].endswith(f"/gazex-gateway:{version}-{variant}")


def test_data_volume_is_shared_read_write_many_and_kept() -> None:
    documents = _render()
    claim = _one(documents, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volumes = {v["name"]: v for v in _one(documents, "StatefulSet")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert "volumeClaimTemplates" not in _one(documents, "StatefulSet")["spec"], "one volume shared by all pods"
    hospital = _render(str(HOSPITAL_VALUES))
    assert not [d for d in hospital if d["kind"] == "PersistentVolumeClaim"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"persistence.accessModes[0]": "ReadWriteOnce"}, "replicaCount > 1 needs a ReadWriteMany volume"),
        ({"config.storage.data_dir": "/data"}, "config.storage.data_dir is set by the chart"),
        ({"config.dicom.port": "104"}, "config.dicom.port and config.dicom.tls are set by the chart"),
        ({"config.database.url": "sqlite:///x"}, "config.database is set by the chart"),
        ({"database.existingSecret": ""}, "database.existingSecret must name a Secret"),
        ({"image.variant": "tpu"}, 'image.variant is "tpu": use cpu or gpu'),
        ({"config.http.host": "0.0.0.0"}, "config.http.host is set by the chart from http"),
        ({"config.http.allow_insecure_remote": "true"}, "config.http.allow_insecure_remote is set by the chart"),
        ({"config.audit.path": "/a.log"}, "config.audit.path is set by the chart"),
        (
            {"http.allowInsecureRemote": "true", "http.service.type": "LoadBalancer"},
            "http.service.type LoadBalancer would carry plain HTTP beyond the cluster",
        ),
        ({"http.ingress.enabled": "true"}, "http.ingress.enabled needs the console on the pod's address"),
        ({"metrics.serviceMonitor.enabled": "true"}, "metrics.serviceMonitor.enabled needs the console"),
        (
            {"http.tls.enabled": "true", "metrics.podAnnotations": "true"},
            "metrics.podAnnotations sends no token: set config.http.metrics_public",
        ),
    ],
)
def test_values_that_cannot_work_are_refused_with_a_reason(sets: dict[str, str], message: str) -> None:
    args = ["template", RELEASE, str(CHART)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    result = _run_helm(*args)
    assert result.returncode != 0
    assert message in result.stderr


def _value_paths(values: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(values, dict):
        for key, value in values.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from _value_paths(value, path)


def test_every_value_the_templates_use_exists_and_every_value_is_used() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    defined = set(_value_paths(values))
    templates = "\n".join(path.read_text(encoding="utf-8") for path in (CHART / "templates").iterdir())
    referenced = set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", templates))
    assert referenced, "no .Values references found"
    assert referenced <= defined, f"templates use values that values.yaml lacks: {sorted(referenced - defined)}"
    for top in values:
        assert any(path == top or path.startswith(f"{top}.") for path in referenced), f"values.{top} is never used"


def test_the_console_service_ingress_and_network_policy(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, documents = rendered
    pod_labels = _one(documents, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    http_services = [d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == f"{RELEASE}-http"]
    if name == "defaults":
        # loopback only: nothing in the cluster reaches the console (kubectl port-forward does)
        assert not http_services
        assert not [d for d in documents if d["kind"] in ("Ingress", "ServiceMonitor")]
        return
    [service] = http_services
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == "http" and port["appProtocol"] == ("https" if name == "hospital" else "http")
    # the DICOM Service (a LoadBalancer in the hospital values) does not carry the console
    assert [p["targetPort"] for p in _one(documents, "Service", RELEASE)["spec"]["ports"]] == ["dicom"]
    ingress = _one(documents, "Ingress")
    [rule] = ingress["spec"]["rules"]
    [tls] = ingress["spec"]["tls"]
    assert tls["hosts"] == [rule["host"]] and tls["secretName"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    if name == "hospital":
        annotations = ingress["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
        volumes = {v["name"]: v for v in _one(documents, "StatefulSet")["spec"]["template"]["spec"]["volumes"]}
        assert volumes["http-tls"]["secret"] == {"secretName": "gazex-http-tls", "defaultMode": 0o440}
    policy = _one(documents, "NetworkPolicy")
    by_port = {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}
    assert set(by_port) == {"dicom", "http"}
    namespaces = {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in by_port["http"]}
    assert namespaces == {"ingress-nginx", "monitoring"}
    assert not any("namespaceSelector" in peer for peer in by_port["dicom"])


def test_prometheus_scrapes_metrics_with_a_token_from_a_secret(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, documents = rendered
    if name == "defaults":
        return
    monitor = _one(documents, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    pod_labels = _one(documents, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["radiology"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "gazex-metrics-token", "key": "token"},
    }
    if name == "hospital":
        assert endpoint["scheme"] == "https" and endpoint["tlsConfig"] == {"insecureSkipVerify": True}
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
    else:
        assert endpoint["scheme"] == "http" and "tlsConfig" not in endpoint


def test_scrape_annotations_need_public_metrics_and_follow_the_scheme(tmp_path: Path) -> None:
    documents = _render(
        str(INGRESS_VALUES),
        **{
            "metrics.serviceMonitor.enabled": "false",
            "metrics.podAnnotations": "true",
            "config.http.metrics_public": "true",
        },
    )
    annotations = _one(documents, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/scheme"] == "http"
    assert annotations["prometheus.io/port"] == str(_container(documents)["ports"][1]["containerPort"])
    config = tmp_path / "gazex.yaml"
    config.write_text(_one(documents, "ConfigMap")["data"]["gazex.yaml"], encoding="utf-8")
    assert load_settings(config, environ={}).http.metrics_public


def test_without_http_the_probes_are_gazex_health_and_tcp(tmp_path: Path) -> None:
    documents = _render(**{"http.enabled": "false"})
    container = _container(documents)
    assert [port["name"] for port in container["ports"]] == ["dicom"]
    assert container["readinessProbe"]["exec"]["command"] == ["gazex", "health"]
    assert container["livenessProbe"]["tcpSocket"]["port"] == "dicom"
    config = tmp_path / "gazex.yaml"
    config.write_text(_one(documents, "ConfigMap")["data"]["gazex.yaml"], encoding="utf-8")
    assert not load_settings(config, environ={}).http.enabled
    assert not [d for d in documents if d["metadata"]["name"] == f"{RELEASE}-http"]
