"""The Pod Security checks of test_cluster_install.py cannot pass vacuously: in the same kind of
namespace, a non-compliant pod is refused by `enforce`, a non-compliant Deployment is warned about by
`warn` (in the response's Warning headers and in helm's stderr) and annotated by `audit`."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from wp_devsupport.chart import HELMS
from wp_devsupport.cluster.support import (
    Cluster,
    Namespace,
    create_namespace,
    helm_install,
    pod_from_template,
    pod_security_annotations,
    scenarios,
)

pytestmark = pytest.mark.integration

COMPLIANT_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "probe"},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "image": "registry.invalid/c:1",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    },
}


def privileged(pod: dict[str, Any]) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["spec"]["containers"][0]["securityContext"]["privileged"] = True
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    return pod


def service_account(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}


def test_enforce_refuses_a_privileged_pod_that_an_unlabelled_namespace_admits(
    cluster: Cluster, namespace: Namespace
) -> None:
    kube = cluster.kube
    # The ServiceAccount admission plugin refuses pods whose ServiceAccount does not exist, and the
    # controller that creates `default` in every namespace does not run here.
    for ns in (namespace.name, plain := create_namespace(cluster, cluster.unique("no-pod-security-")).name):
        assert kube.create(service_account("default", ns)).ok

    assert kube.create(COMPLIANT_POD, namespace.name, dry_run=True).status == 201

    refused = kube.create(privileged(COMPLIANT_POD), namespace.name, dry_run=True)
    assert refused.status == 403, refused
    assert 'violates PodSecurity "restricted:latest"' in refused.message
    assert "privileged" in refused.message

    # Not refused for another reason (--allow-privileged, ServiceAccount): without the labels it is admitted.
    admitted = kube.create(privileged(COMPLIANT_POD), plain, dry_run=True)
    assert admitted.status == 201, admitted.message
    assert admitted.warnings == []


def test_warn_and_audit_report_a_non_compliant_deployment(cluster: Cluster, namespace: Namespace) -> None:
    kube = cluster.kube
    pod = privileged(COMPLIANT_POD)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "loose", "namespace": namespace.name},
        "spec": {
            "selector": {"matchLabels": {"app": "loose"}},
            "template": {"metadata": {"labels": {"app": "loose"}}, "spec": pod["spec"]},
        },
    }
    created = kube.create(deployment)
    # Only pods are refused; the workload is admitted with a warning, so "no warning" is the check.
    assert created.status == 201, created.message
    assert len(created.warnings) == 1, created.warnings
    assert created.warnings[0].startswith('would violate PodSecurity "restricted:latest": privileged')
    (annotation,) = pod_security_annotations(cluster.control_plane, namespace)
    assert annotation.startswith("create deployments/loose: pod-security.kubernetes.io/audit-violations=")
    # ...and the pod its controller would create is refused: what test_cluster_install.py submits.
    refused = kube.create(pod_from_template(created.body), dry_run=True)
    assert refused.status == 403, refused.message


@pytest.mark.parametrize("helm", HELMS)
def test_helm_reports_the_warning_of_a_non_compliant_chart_install(
    cluster: Cluster, namespace: Namespace, helm: str
) -> None:
    """With an extra container lacking a security context, the chart's API Deployment violates
    `restricted`: helm's stderr carries the server's warning, the audit log the violation."""
    extra = '[{"name":"loose","image":"registry.invalid/loose:1"}]'
    run = helm_install(
        cluster,
        scenarios()["defaults"],
        namespace.name,
        cluster.unique("wp"),
        helm,
        extra=("--set-json", f"api.extraContainers={extra}"),
    )
    assert "STATUS: deployed" in run.stdout, run.output
    stderr = run.stderr.replace('\\"', '"')  # helm logs the warning as a quoted Go string
    assert 'Warning: would violate PodSecurity "restricted:latest"' in stderr, run.output
    assert 'container "loose" must set securityContext.allowPrivilegeEscalation=false' in stderr
    violations = pod_security_annotations(cluster.control_plane, namespace)
    assert len(violations) == 1, violations
    assert "deployments/" in violations[0]
    assert "audit-violations" in violations[0]
