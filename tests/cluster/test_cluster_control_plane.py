"""The control plane is what it claims: the pinned Kubernetes, the admission plugins of a real cluster,
the CRDs served and enforced, and no controllers (so nothing here may expect pods)."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from wp_devsupport.cluster.control_plane import ADMISSION_PLUGINS, KUBE_APISERVER
from wp_devsupport.cluster.support import Cluster, Namespace
from wp_devsupport.repo import REPO

pytestmark = pytest.mark.integration


def _pinned(name: str) -> str:
    m = re.search(rf"^{name}=(\S+)$", (REPO / "ci" / "tools.sh").read_text(), re.MULTILINE)
    assert m, f"{name} not found in ci/tools.sh"
    return m.group(1)


def test_serves_the_pinned_kubernetes_version(cluster: Cluster) -> None:
    pinned = _pinned("KUBERNETES_VERSION")
    version = cluster.kube.call("GET", "/version").body
    assert version["gitVersion"] == pinned, version
    assert f"{version['major']}.{version['minor']}" == pinned.removeprefix("v").rsplit(".", 1)[0]
    binary = subprocess.run([str(KUBE_APISERVER), "--version"], capture_output=True, text=True, check=True).stdout
    assert binary.split() == ["Kubernetes", pinned]


def test_admission_plugins_of_a_real_cluster_are_loaded(cluster: Cluster) -> None:
    loaded = cluster.control_plane.admission_plugins()
    assert loaded["mutating"], "the API server did not log its mutating admission plugins"
    assert loaded["validating"], "the API server did not log its validating admission plugins"
    assert set(ADMISSION_PLUGINS) == set(loaded["mutating"]) | set(loaded["validating"]), loaded
    for plugin in ("PodSecurity", "ServiceAccount", "LimitRanger", "ResourceQuota", "ValidatingAdmissionWebhook"):
        assert plugin in loaded["validating"], plugin
    for plugin in ("NamespaceLifecycle", "DefaultStorageClass", "DefaultTolerationSeconds", "MutatingAdmissionWebhook"):
        assert plugin in loaded["mutating"], plugin


def test_crds_are_served_and_their_schemas_enforced(cluster: Cluster, namespace: Namespace) -> None:
    kube = cluster.kube
    for api_version, kind in (
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ):
        assert kube.resource(api_version, kind).namespaced

    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "m", "namespace": namespace.name},
        "spec": {"selector": {}, "endpoints": [{"port": "metrics", "interval": "30s"}]},
    }
    assert kube.create(monitor, dry_run=True).ok
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    refused = kube.create(monitor, dry_run=True)
    assert refused.status == 400, refused
    assert 'unknown field "spec.endpoints[0].intervall"' in refused.message

    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "s", "namespace": namespace.name},
        "spec": {"triggers": [{"type": "redis", "metadata": {}}]},
    }
    refused = kube.create(scaled, dry_run=True)
    assert refused.status == 422, refused
    assert "scaleTargetRef: Required value" in refused.message


def test_no_controller_runs_so_no_pod_is_ever_created(cluster: Cluster, namespace: Namespace) -> None:
    """Deployments are stored and nothing more: the tests check objects and admission, never pods."""
    kube = cluster.kube
    labels = {"app": "x"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x", "namespace": namespace.name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "x",
                            "image": "registry.invalid/x:1",
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        }
                    ],
                },
            },
        },
    }
    created = kube.create(deployment)
    assert created.ok, created
    assert created.body["spec"]["replicas"] == 1, "server-side defaulting"
    time.sleep(2)
    for api_version, kind in (("apps/v1", "ReplicaSet"), ("v1", "Pod")):
        assert kube.list(kube.resource(api_version, kind), namespace.name) == []
    stored = kube.get("apps/v1", "Deployment", namespace.name, "x")
    assert stored is not None
    assert not stored.get("status", {}).get("replicas")
