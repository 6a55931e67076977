"""Helpers of the chart's behaviour tests (one `test_chart_<feature>.py` module per feature).

* `with_values(extra)`: the CI defaults with top-level blocks merged one level deep.
* `api_pod`, `worker_pod`, `api_pod_any`, `pod_labels`: where the objects under test live.
* The worker's environment contract, read from the README's configuration tables.
* The Pod Security "restricted" checks, field by field (tests/ci checks the collector with them too).
"""

from __future__ import annotations

import re
from typing import Any

from chart_support import FULLNAME, REPO, default_values, find, find_all, pod_spec

CONTRACT = (REPO / "README.md").read_text()
#: Environment variables the worker understands, from the configuration tables of the README.
CONTRACT_VARS = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", CONTRACT, flags=re.M))
#: Standard OpenTelemetry SDK variables and the downward-API helpers they reference.
OTEL_VARS = {
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
}
DOWNWARD_VARS = {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "NODE_NAME": "spec.nodeName"}


def with_values(extra: dict[str, Any]) -> dict[str, Any]:
    values = default_values()
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def api_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return pod_spec(find(objects, "Deployment", FULLNAME))


def worker_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return pod_spec(find(objects, "Deployment", f"{FULLNAME}-worker"))


def api_pod_any(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The API pod whatever the release's name (the root chart's release names it differently)."""
    (deployment,) = [
        d for d in find_all(objects, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    ]
    return pod_spec(deployment)


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    if workload["kind"] == "Pod":
        return workload["metadata"]["labels"]
    return workload["spec"]["template"]["metadata"]["labels"]


# ----------------------------------------------------------------------------- Pod Security "restricted"

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_pod_problems(where: str, spec: dict[str, Any]) -> list[str]:
    problems = [f"{where}: {flag}" for flag in ("hostNetwork", "hostPID", "hostIPC") if spec.get(flag)]
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken is not false")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"{where}: volume {volume['name']} of type {kinds}")
    return problems


def restricted_container_problems(name: str, ctr: dict[str, Any], pod_sc: dict[str, Any]) -> list[str]:
    sc = ctr.get("securityContext", {})
    capabilities = sc.get("capabilities", {})
    seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
    checks = {
        "privileged": bool(sc.get("privileged")),
        "allowPrivilegeEscalation is not false": sc.get("allowPrivilegeEscalation") is not False,
        "capabilities do not drop ALL": "ALL" not in capabilities.get("drop", []),
        "adds capabilities": bool(set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}),
        "runAsNonRoot is not true": not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")),
        "runs as UID 0": sc.get("runAsUser", pod_sc.get("runAsUser")) == 0,
        f"seccomp profile {seccomp}": seccomp not in ("RuntimeDefault", "Localhost"),
        "root filesystem is writable": sc.get("readOnlyRootFilesystem") is not True,
        "hostPort": any(p.get("hostPort") for p in ctr.get("ports", [])),
    }
    return [f"{name}: {problem}" for problem, failed in checks.items() if failed]
