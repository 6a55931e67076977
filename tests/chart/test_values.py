"""values.yaml, values.schema.json and README.md agree, the schema is closed, and bad values fail
`helm template` with a message that names the problem."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from wp_devsupport.chart import CHART, CI_VALUES, HELMS, REPO, HelmError, default_values, render_chart

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())

# Objects that deliberately accept any keys: maps of labels/annotations/quantities (typed values),
# Kubernetes objects passed through to the pod spec (validated by the tests below and the API server),
# and the Kubernetes security-context sub-objects the chart does not interpret.
FREE_FORM = {
    "#/properties/global",
    "#/definitions/stringMap",
    "#/definitions/k8sObject",
    "#/definitions/k8sObjectList/items",
    "#/definitions/envVarList/items",
    "#/definitions/resources/properties/limits",
    "#/definitions/resources/properties/requests",
    "#/definitions/resources/properties/claims/items",
    "#/definitions/podSecurityContext/properties/appArmorProfile",
    "#/definitions/podSecurityContext/properties/seLinuxOptions",
    "#/definitions/podSecurityContext/properties/sysctls/items",
    "#/definitions/podSecurityContext/properties/windowsOptions",
    "#/definitions/containerSecurityContext/properties/appArmorProfile",
    "#/definitions/containerSecurityContext/properties/seLinuxOptions",
    "#/definitions/containerSecurityContext/properties/windowsOptions",
    "#/properties/otel/properties/resourceAttributes",
}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SCHEMA
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def _object_schemas(node: Any, pointer: str = "#"):
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield pointer, node
        for key, value in node.items():
            if key in ("properties", "definitions"):
                for name, sub in value.items():
                    yield from _object_schemas(sub, f"{pointer}/{key}/{name}")
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                yield from _object_schemas(value, f"{pointer}/{key}")
            elif key in ("anyOf", "oneOf", "allOf"):
                for i, sub in enumerate(value):
                    yield from _object_schemas(sub, f"{pointer}/{key}/{i}")


def test_every_values_key_is_in_the_schema() -> None:
    missing: list[str] = []

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        node = _resolve(node)
        if not isinstance(value, dict):
            return
        for key, child in value.items():
            props = node.get("properties", {})
            if key in props:
                walk(child, props[key], f"{path}.{key}")
            elif isinstance(node.get("additionalProperties"), dict):
                walk(child, node["additionalProperties"], f"{path}.{key}")
            else:
                missing.append(f"{path}.{key}".lstrip("."))

    walk(VALUES, SCHEMA, "")
    assert not missing, f"values.yaml keys without a schema: {missing}"


def test_schema_is_closed_except_free_form_maps() -> None:
    open_objects = []
    for pointer, node in _object_schemas(SCHEMA):
        if pointer in FREE_FORM:
            continue
        if "properties" not in node or node.get("additionalProperties") is not False:
            open_objects.append(pointer)
    assert not open_objects, f"objects without additionalProperties: false: {open_objects}"
    assert SCHEMA["additionalProperties"] is False


def test_every_value_has_a_description() -> None:
    undescribed = []

    def walk(node: dict[str, Any], path: str) -> None:
        for key, child in node.get("properties", {}).items():
            resolved = _resolve(child)
            if not (child.get("description") or resolved.get("description")):
                undescribed.append(f"{path}{key}")
            if "properties" in resolved and "$ref" not in child:
                walk(resolved, f"{path}{key}.")

    walk(SCHEMA, "")
    assert not undescribed, undescribed


def test_readme_and_schema_descriptions_are_current() -> None:
    """ci/chart_docs.py --check: every key commented in values.yaml, README table and schema in sync."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "ci" / "chart_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_readme_documents_every_values_key() -> None:
    readme = (CHART / "README.md").read_text()

    def keys(value: Any, prefix: str = ""):
        for key, child in value.items():
            path = f"{prefix}{key}"
            node_is_section = isinstance(child, dict) and child and f"`{path}`" not in readme
            if node_is_section:
                yield from keys(child, f"{path}.")
            else:
                yield path

    undocumented = [k for k in keys(VALUES) if f"`{k}`" not in readme]
    assert not undocumented, undocumented


def test_the_defaults_alone_ask_for_the_redis_host() -> None:
    with pytest.raises(HelmError, match=r"redis\.host is required"):
        render_chart()


# (values, expected message) for values the schema or the templates must refuse.
BAD_VALUES = {
    "typo-top-level": ({"serviceMonitr": {"enabled": True}}, r"additional properties 'serviceMonitr' not allowed"),
    "typo-nested": ({"worker": {"shutdownTimout": 30}}, r"/worker.*additional properties 'shutdownTimout'"),
    "wrong-type": ({"redis": {"port": "6379"}}, r"/redis/port.*want integer"),
    "wrong-enum": ({"worker": {"mode": "daemonset"}}, r"/worker/mode"),
    "unknown-queue": ({"worker": {"queues": ["emails"]}}, r"/worker/queues/0"),
    "bad-protocol": ({"otel": {"protocol": "http/json"}}, r"/otel/protocol"),
    "security-context-typo": (
        {"api": {"containerSecurityContext": {"readOnlyRootFileSystem": True}}},
        r"/api/containerSecurityContext.*readOnlyRootFileSystem",
    ),
    "keda-in-sidecar-mode": (
        {"worker": {"keda": {"enabled": True, "skipApiCheck": True}}},
        r"worker\.keda\.enabled requires worker\.mode=deployment",
    ),
    "grace-period-too-short": (
        {"worker": {"terminationGracePeriodSeconds": 65}},
        r"worker\.terminationGracePeriodSeconds \(65\) must be greater than "
        r"worker\.shutdownTimeout \+ worker\.telemetryFlushTimeout \(60 \+ 5 = 65\)",
    ),
    "grace-period-shorter-than-prestop": (
        {"api": {"preStopSleepSeconds": 30, "terminationGracePeriodSeconds": 30}},
        r"api\.terminationGracePeriodSeconds \(30\) must be greater than api\.preStopSleepSeconds \(30\)",
    ),
    "native-sidecar-grace-period": (
        {"worker": {"nativeSidecar": True, "terminationGracePeriodSeconds": 90}},
        r"worker\.terminationGracePeriodSeconds \(90\) must be greater than api\.terminationGracePeriodSeconds \+ "
        r"worker\.shutdownTimeout \+ worker\.telemetryFlushTimeout \(30 \+ 60 \+ 5 = 95\) with worker\.nativeSidecar",
    ),
    "liveness-stricter-than-readiness": (
        {"api": {"livenessProbe": {"failureThreshold": 1}}},
        r"api\.livenessProbe gives up after 10s \(periodSeconds x failureThreshold = 10 x 1\), not later than "
        r"api\.readinessProbe \(10s = 5 x 2\)",
    ),
    "password-and-existing-secret": (
        {"redis": {"existingSecret": "redis", "password": "x"}},
        r"redis\.password and redis\.existingSecret are mutually exclusive",
    ),
    "embedded-with-host": ({"embeddedRedis": {"enabled": True}}, r"redis\.host must be empty when embeddedRedis"),
    "embedded-password-with-quote": (
        {"embeddedRedis": {"enabled": True}, "redis": {"host": "", "password": 'pa"ss'}},
        r"redis\.password must not contain a double quote, a backslash or a line break with embeddedRedis\.enabled",
    ),
    "ca-without-tls": ({"redis": {"tls": {"existingCaSecret": "ca"}}}, r"redis\.tls\.existingCaSecret is set"),
    "pdb-both-bounds": (
        {"api": {"podDisruptionBudget": {"minAvailable": 1}}},
        r"api\.podDisruptionBudget: set either minAvailable or maxUnavailable",
    ),
    "reserved-resource-attribute": (
        {"otel": {"resourceAttributes": {"service.version": "9"}}},
        r"otel\.resourceAttributes\.service\.version is set by the chart",
    ),
    "comma-in-resource-attribute": (
        {"otel": {"resourceAttributes": {"team": "a,b"}}},
        r"/otel/resourceAttributes/team",
    ),
    "keda-activation-with-scale-to-zero": (
        {"worker": {"mode": "deployment", "keda": {"enabled": True, "minReplicaCount": 0, "activationJobs": 3}}},
        r"worker\.keda\.activationJobs \(3\) must be 0 when worker\.keda\.minReplicaCount is 0",
    ),
    "keda-fallback-incomplete": (
        {"worker": {"mode": "deployment", "keda": {"enabled": True, "fallback": {"replicas": 2}}}},
        r"worker\.keda\.fallback needs both failureThreshold and replicas",
    ),
    "keda-fallback-above-max": (
        {
            "worker": {
                "mode": "deployment",
                "keda": {"enabled": True, "maxReplicaCount": 3, "fallback": {"failureThreshold": 3, "replicas": 5}},
            }
        },
        r"worker\.keda\.fallback\.replicas \(5\) must be at most worker\.keda\.maxReplicaCount \(3\)",
    ),
    "keda-scaling-modifiers-are-the-charts": (
        {"worker": {"keda": {"advanced": {"scalingModifiers": {"formula": "x"}}}}},
        r"/worker/keda/advanced.*additional properties 'scalingModifiers'",
    ),
    "keda-old-list-length": (
        {"worker": {"keda": {"listLength": 5}}},
        r"/worker/keda.*additional properties 'listLength'",
    ),
    "dns-without-ports": (
        {"networkPolicy": {"enabled": True, "dnsPorts": []}},
        r"/networkPolicy/dnsPorts",
    ),
    "clone-egress-without-hosts": (
        {"networkPolicy": {"enabled": True, "cloneEgressTo": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}},
        r"networkPolicy\.cloneEgressTo is set but worker\.clone\.allowedHosts is empty",
    ),
    "scrape-timeout-above-interval": (
        {"serviceMonitor": {"enabled": True, "interval": "30s", "scrapeTimeout": "1m"}},
        r"serviceMonitor\.scrapeTimeout \(1m\) must not exceed serviceMonitor\.interval \(30s\)",
    ),
    "scrape-timeout-above-interval-compound": (
        {"serviceMonitor": {"enabled": True, "interval": "1m30s", "scrapeTimeout": "1m30s500ms"}},
        r"serviceMonitor\.scrapeTimeout \(1m30s500ms\) must not exceed serviceMonitor\.interval \(1m30s\)",
    ),
    "helm-test-without-ping": (
        {"worker": {"queues": ["clone-queue"]}},
        r"tests\.enabled needs a worker that consumes the ping queue, but worker\.queues is \[clone-queue\]",
    ),
    "hpa-bounds": (
        {"api": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
        r"api\.autoscaling\.maxReplicas \(2\) must be at least api\.autoscaling\.minReplicas \(5\)",
    ),
    "servicemonitor-without-crd": (
        {"serviceMonitor": {"enabled": True}},
        r"serviceMonitor\.enabled is true but the cluster does not serve monitoring\.coreos\.com/v1",
    ),
    "keda-without-crd": (
        {"worker": {"mode": "deployment", "keda": {"enabled": True}}},
        r"worker\.keda\.enabled is true but the cluster does not serve keda\.sh/v1alpha1",
    ),
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_fail_with_a_clear_message(case: str, helm: str) -> None:
    extra, message = BAD_VALUES[case]
    values = _merge(default_values(), extra)
    if case == "embedded-with-host":
        values["redis"]["host"] = "redis.example"
    api_versions = () if case.endswith("without-crd") else ("monitoring.coreos.com/v1", "keda.sh/v1alpha1")
    with pytest.raises(HelmError) as failure:
        render_chart(values, helm=helm, api_versions=api_versions)
    assert __import__("re").search(message, failure.value.stderr), failure.value.stderr


def test_api_checks_pass_when_the_cluster_serves_the_crds() -> None:
    values = _merge(default_values(), {"serviceMonitor": {"enabled": True}})
    kinds = {o["kind"] for o in render_chart(values, api_versions=["monitoring.coreos.com/v1"])}
    assert "ServiceMonitor" in kinds
    values = _merge(default_values(), {"serviceMonitor": {"enabled": True, "skipApiCheck": True}})
    kinds = {o["kind"] for o in render_chart(values, api_versions=())}
    assert "ServiceMonitor" in kinds


def test_native_sidecar_needs_kubernetes_1_29() -> None:
    values = _merge(default_values(), {"worker": {"nativeSidecar": True, "terminationGracePeriodSeconds": 120}})
    # Chart.yaml's kubeVersion (>=1.29) refuses older clusters for every configuration, native sidecars too.
    with pytest.raises(HelmError, match=r"chart requires kubeVersion: >=1\.29\.0-0"):
        render_chart(values, kube_version="1.28")
    render_chart(values, kube_version="1.29")


def test_yaml_files_pass_yamllint() -> None:
    config = (
        "{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: {check-keys: false}}}"
    )
    files = [CHART / "values.yaml", CHART / "Chart.yaml", REPO / "Chart.yaml", REPO / "values-staging.yaml"]
    files += sorted(CI_VALUES.glob("*.yaml"))
    proc = subprocess.run(
        [sys.executable, "-m", "yamllint", "-f", "parsable", "-d", config, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
