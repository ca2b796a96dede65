"""The Kubernetes manifests are valid and keep the promises the README makes.

Schemas come from ``kubernetes-validate``, which ships the Kubernetes JSON schemas in
the package: nothing here touches the network. Strict mode rejects unknown fields.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gicap.config import load_settings
from tests.support import ROOT, SETTINGS

DEPLOY = ROOT / "deploy" / "kubernetes"
# Oldest supported release and a later one; both ship with kubernetes-validate>=1.33.
K8S_VERSIONS = ("1.29", "1.33")
MANIFESTS = (
    "namespace.yaml",
    "deployment.yaml",
    "service.yaml",
    "hpa.yaml",
    "pdb.yaml",
    "secret.example.yaml",
)
TLS_KEYS = {"tls-cafile", "tls-server-cert", "tls-server-key"}
TLS_DIR = "/etc/gicap/tls"
SETTINGS_PATH = "/etc/gicap/settings.toml"

Doc = dict[str, Any]


def _docs(name: str) -> list[Doc]:
    text = (DEPLOY / name).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _one(name: str) -> Doc:
    docs = _docs(name)
    assert len(docs) == 1, name
    return docs[0]


def _validate(doc: Doc, version: str) -> None:
    """Strict schema validation; a missing schema is a failure, not a skip."""
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{where} invalid for Kubernetes {version}: {path}: {exc.message}")


@pytest.fixture(scope="module")
def kustomization() -> Doc:
    return _one("kustomization.yaml")


@pytest.fixture(scope="module")
def deployment() -> Doc:
    return _one("deployment.yaml")


@pytest.fixture(scope="module")
def pod(deployment: Doc) -> Doc:
    return deployment["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod: Doc) -> Doc:
    (gicap,) = [c for c in pod["containers"] if c["name"] == "gicap"]
    return gicap


@pytest.fixture(scope="module")
def pod_env(container: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


@pytest.fixture(scope="module")
def pod_settings(pod_env: dict[str, str]):
    """The settings as the pod sees them: the ConfigMap file plus the pod's overrides."""
    overrides = {k: v for k, v in pod_env.items() if k.startswith("GICAP_")}
    return load_settings(DEPLOY / "settings.toml", environ=overrides)


def _ports(container: Doc) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def _mounts(container: Doc) -> dict[str, Doc]:
    return {m["mountPath"]: m for m in container["volumeMounts"]}


def _volume(pod: Doc, name: str) -> Doc:
    (volume,) = [v for v in pod["volumes"] if v["name"] == name]
    return volume


def _quantity(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * factor
    return int(value)


# --- schema validation ---------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid(name: str, version: str) -> None:
    docs = _docs(name)
    assert docs, f"{name} is empty"
    for doc in docs:
        _validate(doc, version)


def test_strict_validation_rejects_unknown_fields(deployment: Doc) -> None:
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_kustomization_lists_the_manifests(kustomization: Doc) -> None:
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    assert set(resources) == set(MANIFESTS) - {"secret.example.yaml"}
    for name in resources:
        assert (DEPLOY / name).is_file(), name
    # Re-applying must never replace real certificates with the placeholders.
    assert "secret.example.yaml" not in resources
    (generator,) = kustomization["configMapGenerator"]
    assert generator["name"] == "gicap-settings"
    assert generator["files"] == ["settings.toml"]


def test_kustomize_build_is_valid() -> None:
    """Render with kustomize (kubectl's built-in or standalone) and validate the result."""
    if kubectl := shutil.which("kubectl"):
        cmd = [kubectl, "kustomize", str(DEPLOY)]
    elif kustomize := shutil.which("kustomize"):
        cmd = [kustomize, "build", str(DEPLOY)]
    else:
        # Every manifest is still schema-validated one by one above.
        pytest.skip("neither kubectl nor kustomize installed")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Namespace",
        "PodDisruptionBudget",
        "Service",
    ]
    for doc in docs:
        for version in K8S_VERSIONS:
            _validate(doc, version)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "gicap"
    by_kind = {d["kind"]: d for d in docs}
    configmap = by_kind["ConfigMap"]
    assert configmap["data"]["settings.toml"] == SETTINGS.read_text()
    volumes = by_kind["Deployment"]["spec"]["template"]["spec"]["volumes"]
    (settings_volume,) = [v for v in volumes if "configMap" in v]
    # The hashed name: a changed settings.toml rolls the Deployment.
    assert settings_volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert configmap["metadata"]["name"].startswith("gicap-settings-")


# --- settings --------------------------------------------------------------------------


def test_configmap_settings_equal_the_project_settings() -> None:
    assert (DEPLOY / "settings.toml").read_bytes() == SETTINGS.read_bytes(), (
        "deploy/kubernetes/settings.toml drifted: cp settings.toml deploy/kubernetes/ "
        "(pod-specific values belong in deployment.yaml's env)"
    )


def test_pod_settings_load(pod_settings, pod_env: dict[str, str]) -> None:
    # load_settings raised nothing; the overrides took effect.
    assert pod_settings.server.spool_dir == pod_env["GICAP_SERVER__SPOOL_DIR"]
    assert pod_settings.server.workers == int(pod_env["GICAP_SERVER__WORKERS"])


def test_settings_file_mounted_where_the_command_reads_it(pod: Doc, container: Doc) -> None:
    assert container["command"] == ["gicap", "serve", "--settings", SETTINGS_PATH]
    mount = _mounts(container)[SETTINGS_PATH]
    assert mount["subPath"] == "settings.toml"
    assert mount.get("readOnly") is True
    assert _volume(pod, mount["name"])["configMap"]["name"] == "gicap-settings"


# --- certificates --------------------------------------------------------------------


def test_secret_mounted_as_a_directory(pod: Doc, container: Doc, pod_settings) -> None:
    mount = _mounts(container)[TLS_DIR]
    # subPath mounts never see Secret updates; the ..data swap needs a directory.
    assert "subPath" not in mount and "subPathExpr" not in mount
    assert mount.get("readOnly") is True
    for other in container["volumeMounts"]:
        if other["name"] == mount["name"]:
            assert other is mount, "the TLS secret is mounted twice"
    secret = _volume(pod, mount["name"])["secret"]
    assert secret["secretName"] == "gicap-tls"
    assert not secret.get("optional", False)
    # Either every key is projected or exactly the three, under their own names.
    items = secret.get("items")
    if items is not None:
        assert {i["key"]: i["path"] for i in items} == {k: k for k in TLS_KEYS}
    # The settings read exactly those files.
    cert = pod_settings.certificate
    paths = {PurePosixPath(p) for p in (cert.certfile, cert.keyfile, cert.cafile)}
    assert paths == {PurePosixPath(TLS_DIR) / key for key in TLS_KEYS}


def test_example_secret_has_the_three_keys() -> None:
    secret = _one("secret.example.yaml")
    assert secret["kind"] == "Secret"
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["name"] == "gicap-tls"
    data = {**secret.get("data", {}), **secret.get("stringData", {})}
    assert set(data) == TLS_KEYS


# --- lifecycle -----------------------------------------------------------------------


def test_probes_use_the_metrics_port(container: Doc, pod_env: dict[str, str]) -> None:
    ports = _ports(container)
    assert ports["metrics"] == int(pod_env["GICAP_METRICS__PORT"]) == 9090
    assert pod_env["GICAP_METRICS__HOST"] == "0.0.0.0"
    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        port = get["port"]
        assert ports.get(port, port) == ports["metrics"], probe


def test_grace_period_covers_the_drain(pod: Doc, container: Doc, pod_settings) -> None:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    assert 0 < pre_stop < 30
    drain = pod_settings.server.drain_timeout
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain


def test_hpa_owns_the_replica_count(deployment: Doc) -> None:
    assert "replicas" not in deployment["spec"], "kubectl apply would reset the HPA's count"
    hpa = _one("hpa.yaml")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 10
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"


def test_rollout_keeps_capacity(deployment: Doc) -> None:
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0


def test_pdb_and_service_select_the_pods(deployment: Doc) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdb = _one("pdb.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1
    service = _one("service.yaml")
    assert service["spec"]["selector"].items() <= labels.items()


def test_pods_spread(pod: Doc) -> None:
    keys = {c["topologyKey"] for c in pod.get("topologySpreadConstraints", [])}
    anti = pod.get("affinity", {}).get("podAntiAffinity")
    assert "kubernetes.io/hostname" in keys or anti


# --- service -------------------------------------------------------------------------


def test_service_exposes_icap_and_icaps(container: Doc, pod_settings) -> None:
    service = _one("service.yaml")
    spec = service["spec"]
    assert spec.get("type", "ClusterIP") == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    ports = {p["port"]: p for p in spec["ports"]}
    assert {1344, 11344} <= set(ports)
    container_ports = _ports(container)
    assert container_ports["icap"] == pod_settings.server.port == 1344
    assert container_ports["icaps"] == pod_settings.server.secure_port == 11344
    for port, name in ((1344, "icap"), (11344, "icaps"), (9090, "metrics")):
        target = ports[port]["targetPort"]
        assert container_ports.get(target, target) == container_ports[name]
        assert ports[port]["name"] == name


# --- security and resources ----------------------------------------------------------


def test_restricted_security_context(pod: Doc, container: Doc) -> None:
    pod_sc = pod["securityContext"]
    sc = container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not sc["capabilities"].get("add")
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod.get("automountServiceAccountToken") is False


def test_writable_dirs_are_empty_dirs(pod: Doc, container: Doc, pod_settings) -> None:
    mounts = _mounts(container)
    for path in (pod_settings.server.spool_dir, "/tmp"):
        assert path in mounts, f"{path} is not writable under readOnlyRootFilesystem"
        assert "emptyDir" in _volume(pod, mounts[path]["name"]), path


def test_resources_match_the_workers(container: Doc, pod_settings) -> None:
    limits = container["resources"]["limits"]
    requests = container["resources"]["requests"]
    assert {"cpu", "memory"} <= set(requests)
    cpu = limits["cpu"]
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    assert pod_settings.server.workers == int(cores)
    # A cgroup OOM kill takes the whole container: room for every disarm worker.
    cdr = pod_settings.cdr
    worst = pod_settings.server.workers * cdr.workers * cdr.memory_limit_mb * 2**20
    assert _quantity(limits["memory"]) > worst


def test_readme_documents_rotation_and_restart() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for phrase in (
        "kubectl apply -k",
        "create secret generic gicap-tls",
        "--dry-run=client -o yaml | kubectl apply -f -",
        "rollout restart deployment/gicap",
        "icaps://gicap.",
    ):
        assert phrase in readme, phrase


def test_deploy_files_are_all_covered() -> None:
    expected = set(MANIFESTS) | {"kustomization.yaml", "settings.toml", "README.md"}
    assert {p.name for p in Path(DEPLOY).iterdir()} == expected
