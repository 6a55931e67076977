"""The "restricted" Pod Security Standard checked field by field on rendered pod specs: used by the chart
tests on every workload of the chart and by tests/ci on the kind job's collector.
"""

from __future__ import annotations

from typing import Any

#: Volume types the "restricted" profile allows.
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
    """What in a pod spec breaks the "restricted" Pod Security Standard (host namespaces, volume types),
    plus a mounted service-account token; `where` prefixes each problem."""
    problems = [f"{where}: {flag}" for flag in ("hostNetwork", "hostPID", "hostIPC") if spec.get(flag)]
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken is not false")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"{where}: volume {volume['name']} of type {kinds}")
    return problems


def restricted_container_problems(name: str, ctr: dict[str, Any], pod_sc: dict[str, Any]) -> list[str]:
    """What in a container (with its pod's securityContext `pod_sc`) breaks the "restricted" Pod Security
    Standard, plus a writable root filesystem; `name` prefixes each problem."""
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
