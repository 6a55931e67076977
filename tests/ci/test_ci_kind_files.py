"""The inputs of ci/kind/kind-e2e.sh: ci/kind/kind-values.yaml rendered through the root chart with the real
helm 3 and 4 (every object schema-validated), the collector manifest and its config (validated by
the real collector of the same release), ci/kind/kind-config.yaml, the CRDs the script applies, and
that all of them agree with each other and with the script."""

from __future__ import annotations

import json
import re
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from wp_devsupport.chart import (
    CRD_SCHEMAS,
    HELMS,
    KUBE_VERSIONS,
    all_containers,
    container,
    env_values,
    find,
    find_all,
    kube_schemas,
    load_documents,
    pod_spec,
    pod_specs,
    render_chart_text,
    root_chart_copy,
)
from wp_devsupport.ci_files import (
    API_DIR,
    KIND_CONFIG,
    KIND_E2E,
    KIND_VALUES,
    SUBCHART,
    collector_config,
    collector_objects,
    require_otelcol,
    run,
    script_setting,
    tools_version,
)
from wp_devsupport.pod_security import restricted_container_problems, restricted_pod_problems

RELEASE = script_setting("RELEASE")
NAMESPACE = script_setting("NAMESPACE")
WORKER_IMAGE = script_setting("WORKER_IMAGE")
API_IMAGE = script_setting("API_IMAGE")


@cache
def _rendered(helm: str, kube_version: str) -> str:
    root = root_chart_copy()
    return render_chart_text(
        helm=helm,
        kube_version=kube_version,
        chart=root,
        values_files=[KIND_VALUES],
        # ci/kind/kind-e2e.sh installs the prometheus-operator CRDs before the chart.
        api_versions=("monitoring.coreos.com/v1",),
        release=RELEASE,
        namespace=NAMESPACE,
    )


def rendered(helm: str = "helm", kube_version: str = KUBE_VERSIONS[-1]) -> list[dict[str, Any]]:
    return load_documents(_rendered(helm, kube_version))


def kind_values() -> dict[str, Any]:
    values = yaml.safe_load(KIND_VALUES.read_text())
    assert list(values) == [SUBCHART], "root-chart values nest everything under the dependency's name"
    return dict(values[SUBCHART])


# ----------------------------------------------------------------------------- kind-values.yaml


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("helm", HELMS)
def test_kind_values_render_and_every_object_is_valid(helm: str, kube_version: str) -> None:
    objects = rendered(helm, kube_version)
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "Secret", "ServiceMonitor", "Pod"}
    schemas = kube_schemas(kube_version)
    problems = [str(p) for obj in objects for p in schemas.problems(obj)]
    assert not problems, "\n".join(problems)


def test_helm3_and_helm4_render_the_kind_values_alike() -> None:
    def normalised(helm: str) -> list[dict[str, Any]]:
        objects = rendered(helm)
        for obj in objects:  # the generated password and its checksum differ on every render
            if obj["kind"] == "Secret":
                obj["data"] = dict.fromkeys(obj.get("data", {}), "<generated>")
            if obj["kind"] == "Deployment":
                obj["spec"]["template"]["metadata"].get("annotations", {}).pop("checksum/redis-secret", None)
        return sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"]))

    assert normalised("helm") == normalised("helm3")


def test_the_images_are_the_ones_kind_loads_and_never_pulled() -> None:
    objects = rendered()
    api = find(objects, "Deployment", RELEASE)
    assert api["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    spec = pod_spec(api)
    assert container(spec, "api")["image"] == API_IMAGE
    assert container(spec, "worker")["image"] == WORKER_IMAGE, "the worker runs as a sidecar of the API"
    assert container(spec, "api")["imagePullPolicy"] == container(spec, "worker")["imagePullPolicy"] == "Never"
    test_pod = find(objects, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert container(test_pod["spec"], "probe")["image"] == WORKER_IMAGE
    assert container(test_pod["spec"], "probe")["imagePullPolicy"] == "Never"
    # Only the embedded Redis comes from a registry (a pinned official image).
    pulled = {c["image"] for _, s in pod_specs(objects) for c in all_containers(s)} - {API_IMAGE, WORKER_IMAGE}
    assert len(pulled) == 1, pulled
    assert next(iter(pulled)).startswith("docker.io/library/redis:")


def test_api_probes_and_port_match_the_test_api_image() -> None:
    objects = rendered()
    api = container(pod_spec(find(objects, "Deployment", RELEASE)), "api")
    port = {p["name"]: p["containerPort"] for p in api["ports"]}["http"]
    dockerfile = (API_DIR / "Dockerfile").read_text()
    assert f'CMD ["--port", "{port}"]' in dockerfile, "uvicorn must listen on api.containerPort"
    assert port == int(script_setting("API_CONTAINER_PORT"))
    assert "command" not in api, "the image's entrypoint runs uvicorn"
    assert "args" not in api, "the image's CMD sets the port"
    routes = re.findall(r'@app\.get\("([^"]+)"\)', (API_DIR / "kind_api.py").read_text())
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert api[probe]["httpGet"]["port"] == "http"
        assert api[probe]["httpGet"]["path"] in routes, f"the test API serves no {api[probe]['httpGet']['path']}"
    worker = container(pod_spec(find(objects, "Deployment", RELEASE)), "worker")
    metrics_port = {p["name"]: p["containerPort"] for p in worker["ports"]}["metrics"]
    assert metrics_port == int(script_setting("METRICS_CONTAINER_PORT"))


def test_otel_endpoint_is_the_in_cluster_collector() -> None:
    service = next(o for o in collector_objects() if o["kind"] == "Service")
    port = {p["name"]: p["port"] for p in service["spec"]["ports"]}["otlp-http"]
    url = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local:{port}"
    assert kind_values()["otel"]["endpoint"] == url
    spec = pod_spec(find(rendered(), "Deployment", RELEASE))
    for name in ("api", "worker"):
        env = env_values(container(spec, name))
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == url
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_always_on", "every e2e trace must be kept"
    assert env_values(container(spec, "api"))["OTEL_SERVICE_NAME"] == "wp-k8s-service"
    assert service["metadata"]["namespace"] == script_setting("COLLECTOR_NAMESPACE")


def test_embedded_redis_small_resources_one_pod_and_helm_test() -> None:
    objects = rendered()
    deployments = {o["metadata"]["name"]: o for o in find_all(objects, "Deployment")}
    assert set(deployments) == {RELEASE, f"{RELEASE}-redis"}, "API (+ worker sidecar) and the embedded Redis"
    # One API pod: the script port-forwards to it and reads the only worker's /metrics.
    assert deployments[RELEASE]["spec"]["replicas"] == 1
    env = env_values(container(pod_spec(deployments[RELEASE]), "api"))
    assert env["REDIS_HOST"].startswith(f"{RELEASE}-redis."), "the embedded Redis Service"
    for where, spec in pod_specs(objects):
        for ctr in all_containers(spec):
            requests = ctr["resources"]["requests"]
            assert _quantity(requests["cpu"]) <= 0.1, f"{where}/{ctr['name']}: keep kind small"
            assert ctr["resources"]["limits"]["memory"], f"{where}/{ctr['name']}"
    assert find_all(objects, "ServiceMonitor"), "the CRD is installed: exercise the ServiceMonitor too"


def _quantity(cpu: str) -> float:
    return float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


# ----------------------------------------------------------------------------- collector


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_collector_objects_are_valid(kube_version: str) -> None:
    schemas = kube_schemas(kube_version)
    problems = [str(p) for obj in collector_objects() for p in schemas.problems(obj)]
    assert not problems, "\n".join(problems)


def test_collector_meets_the_restricted_pod_security_standard() -> None:
    """Its namespace enforces "restricted" (as the chart's does in ci/kind/kind-e2e.sh)."""
    objects = collector_objects()
    namespace = find(objects, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment = find(objects, "Deployment")
    spec = pod_spec(deployment)
    problems = restricted_pod_problems("collector", spec)
    for ctr in all_containers(spec):
        problems += restricted_container_problems(ctr["name"], ctr, spec.get("securityContext", {}))
    assert not problems, problems
    assert deployment["metadata"]["name"] == script_setting("COLLECTOR_DEPLOYMENT")


def test_collector_image_is_the_release_the_local_collector_is_built_from() -> None:
    """ci/kind/e2e_check.py parses the debug exporter's output; tests/ci checks that parser against
    bin/otelcol, so the kind collector must be the same release."""
    image = container(pod_spec(find(collector_objects(), "Deployment")), "otel-collector")["image"]
    name, _, tag = image.rpartition(":")
    assert name == "docker.io/otel/opentelemetry-collector", "the official core distribution"
    assert f"v{tag}" == tools_version("OTELCOL")


def test_collector_config_is_valid_for_the_real_collector(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(collector_config())
    result = run([str(require_otelcol()), "validate", f"--config={config}"])
    assert result.returncode == 0, result.stdout + result.stderr
    parsed = yaml.safe_load(collector_config())
    assert parsed["exporters"]["debug"]["verbosity"] == "detailed"
    assert parsed["service"]["pipelines"]["traces"]["exporters"] == ["debug"]
    args = container(pod_spec(find(collector_objects(), "Deployment")), "otel-collector")["args"]
    mount = pod_spec(find(collector_objects(), "Deployment"))["containers"][0]["volumeMounts"][0]["mountPath"]
    assert args == [f"--config={mount}/config.yaml"]


# ----------------------------------------------------------------------------- CRDs


@pytest.mark.parametrize("crd", ["servicemonitors", "prometheusrules"])
def test_the_crds_the_script_applies_exist_and_are_valid(crd: str) -> None:
    assert "CRDS=(servicemonitors prometheusrules)" in KIND_E2E.read_text()
    path = CRD_SCHEMAS / "crds" / f"monitoring.coreos.com_{crd}.yaml"
    if not path.exists():
        pytest.fail("bin/crd-schemas/crds is missing: run `ci/tools.sh crds`")
    documents = load_documents(path.read_text())
    assert [d["kind"] for d in documents] == ["CustomResourceDefinition"]
    assert documents[0]["metadata"]["name"] == f"{crd}.monitoring.coreos.com"
    problems = [str(p) for p in kube_schemas(KUBE_VERSIONS[-1]).problems(documents[0])]
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- kind-config.yaml

_NODE_IMAGE = re.compile(r"^kindest/node:v(\d+)\.(\d+)\.(\d+)@sha256:[0-9a-f]{64}$")


def test_kind_config_pins_the_node_image_by_version_and_digest() -> None:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert set(config) <= {"kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig",
                           "kubeadmConfigPatches", "containerdConfigPatches", "containerdConfigPatchesJSON6902"}  # fmt: skip
    assert config["nodes"], "at least the control-plane node"
    for node in config["nodes"]:
        assert set(node) <= {"role", "image", "extraMounts", "extraPortMappings", "labels", "kubeadmConfigPatches"}
        assert node["role"] in ("control-plane", "worker")
        match = _NODE_IMAGE.match(node["image"])
        assert match, f"not pinned by version and digest: {node['image']}"
        # The chart is schema-checked against these Kubernetes minors: the cluster must be one of them.
        assert f"{match.group(1)}.{match.group(2)}" in KUBE_VERSIONS
    assert "release notes" in KIND_CONFIG.read_text(), "say where a new digest comes from"


def test_node_image_is_the_default_of_the_pinned_kind_release(tmp_path: Path) -> None:
    """kind's own source at the pinned tag (from the Go module proxy) names the same image."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed: cannot read kind's source from the Go module proxy")
    version = script_setting("KIND_VERSION")
    result = run([go, "mod", "download", "-json", f"sigs.k8s.io/kind@{version}"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    source = Path(json.loads(result.stdout)["Dir"]) / "pkg" / "apis" / "config" / "defaults" / "image.go"
    default = re.search(r'const Image = "([^"]+)"', source.read_text())
    assert default, source
    images = {node["image"] for node in yaml.safe_load(KIND_CONFIG.read_text())["nodes"]}
    assert images == {default.group(1)}
