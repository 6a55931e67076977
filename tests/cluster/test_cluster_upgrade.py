"""`helm upgrade` against the live API server: what changes on the server is what the values changed.

No controller runs, so "pods roll" is checked where a controller would see it: the Deployment's pod
template (and with it `metadata.generation`) changes, or does not.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from wp_devsupport.chart import CHART, HELMS, SCENARIOS, container, env_values
from wp_devsupport.cluster.support import Cluster, Namespace, helm_install, scenarios

pytestmark = pytest.mark.integration

CHECKSUM = "checksum/redis-secret"


def upgrade(cluster: Cluster, release: str, namespace: str, helm: str, values: str, *sets: str) -> None:
    args = ["upgrade", release, str(CHART), "--namespace", namespace, "--values", str(SCENARIOS[values])]
    for item in sets:
        args += ["--set", item]
    run = cluster.helm(args, helm)
    assert run.stderr == "", run.output


def deployment(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj = cluster.kube.get("apps/v1", "Deployment", namespace, name)
    assert obj is not None, f"Deployment {name} is missing"
    return obj


def password(cluster: Cluster, namespace: str, name: str) -> str:
    obj = cluster.kube.get("v1", "Secret", namespace, name)
    assert obj is not None, f"Secret {name} is missing"
    return base64.b64decode(obj["data"]["redis-password"]).decode()


@pytest.mark.parametrize("helm", HELMS)
def test_upgrade_changes_image_replicas_and_password_and_nothing_else(
    cluster: Cluster, namespace: Namespace, helm: str
) -> None:
    ns, release = namespace.name, cluster.unique("wp")
    api, secret = f"{release}-wp-k8s-service", f"{release}-wp-k8s-service-redis"
    helm_install(cluster, scenarios()["defaults"], ns, release, helm)
    first, generated = deployment(cluster, ns, api), password(cluster, ns, secret)
    assert len(generated) == 32
    worker_image = container(first["spec"]["template"]["spec"], "worker")["image"]
    assert worker_image == "ghcr.io/wp-k8s-service/worker:0.1.0"

    # A plain upgrade: the generated password is read back (lookup), so nothing changes at all.
    upgrade(cluster, release, ns, helm, "defaults")
    plain = deployment(cluster, ns, api)
    assert password(cluster, ns, secret) == generated
    assert plain["metadata"]["generation"] == first["metadata"]["generation"]
    assert plain["spec"]["template"] == first["spec"]["template"]

    # New worker image and replica count: the pod template changes (pods roll), the password does not.
    upgrade(cluster, release, ns, helm, "defaults", "worker.image.tag=0.2.0", "api.replicaCount=3")
    changed = deployment(cluster, ns, api)
    spec = changed["spec"]["template"]["spec"]
    assert changed["spec"]["replicas"] == 3
    assert container(spec, "worker")["image"] == "ghcr.io/wp-k8s-service/worker:0.2.0"
    assert "service.version=0.2.0" in env_values(container(spec, "worker"))["OTEL_RESOURCE_ATTRIBUTES"]
    assert container(spec, "api")["image"] == container(first["spec"]["template"]["spec"], "api")["image"]
    assert changed["metadata"]["generation"] == first["metadata"]["generation"] + 1
    assert password(cluster, ns, secret) == generated
    annotations = changed["spec"]["template"]["metadata"]["annotations"]
    assert annotations[CHECKSUM] == first["spec"]["template"]["metadata"]["annotations"][CHECKSUM]

    # A new password in the chart-managed Secret: stored, and the checksum rolls the pods.
    sets = ("worker.image.tag=0.2.0", "api.replicaCount=3", "redis.password=rotated-by-the-test")
    upgrade(cluster, release, ns, helm, "defaults", *sets)
    rotated = deployment(cluster, ns, api)
    assert password(cluster, ns, secret) == "rotated-by-the-test"
    assert rotated["spec"]["template"]["metadata"]["annotations"][CHECKSUM] != annotations[CHECKSUM]
    assert rotated["metadata"]["generation"] == changed["metadata"]["generation"] + 1

    history = json.loads(cluster.helm(["history", release, "--namespace", ns, "--output", "json"], helm).stdout)
    assert [(h["revision"], h["status"]) for h in history] == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "superseded"),
        (4, "deployed"),
    ]


@pytest.mark.parametrize("helm", HELMS)
def test_upgrade_between_worker_modes_and_back(cluster: Cluster, namespace: Namespace, helm: str) -> None:
    """Sidecar -> own Deployment with KEDA and an HPA -> sidecar: selectors are immutable, so a chart that
    changed them between modes would fail here; objects of the other mode are created and removed."""
    kube, ns, release = cluster.kube, namespace.name, cluster.unique("wp")
    api, worker = f"{release}-wp-k8s-service", f"{release}-wp-k8s-service-worker"
    mode_objects = (
        ("apps/v1", "Deployment", worker),
        ("policy/v1", "PodDisruptionBudget", worker),
        ("keda.sh/v1alpha1", "ScaledObject", worker),
        ("keda.sh/v1alpha1", "TriggerAuthentication", f"{worker}-redis"),
        ("monitoring.coreos.com/v1", "ServiceMonitor", worker),
        ("autoscaling/v2", "HorizontalPodAutoscaler", api),
    )
    helm_install(cluster, scenarios()["defaults"], ns, release, helm)
    selector = deployment(cluster, ns, api)["spec"]["selector"]
    assert all(kube.get(v, k, ns, n) is None for v, k, n in mode_objects)

    upgrade(cluster, release, ns, helm, "worker-deployment-keda", "redis.existingSecret=")
    for api_version, kind, name in mode_objects:
        assert kube.get(api_version, kind, ns, name) is not None, f"{kind} {name} was not created"
    split = deployment(cluster, ns, api)
    assert split["spec"]["selector"] == selector
    assert [c["name"] for c in split["spec"]["template"]["spec"]["containers"]] == ["api"]

    upgrade(cluster, release, ns, helm, "defaults")
    for api_version, kind, name in mode_objects:
        assert kube.get(api_version, kind, ns, name) is None, f"{kind} {name} was left behind"
    back = deployment(cluster, ns, api)
    assert [c["name"] for c in back["spec"]["template"]["spec"]["containers"]] == ["api", "worker"]


def scale(cluster: Cluster, namespace: str, name: str, replicas: int) -> None:
    """What an autoscaler (or `kubectl scale`) does: write the scale subresource."""
    scaled = cluster.kube.call(
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
        {"spec": {"replicas": replicas}},
        content_type="application/merge-patch+json",
    )
    assert scaled.ok, scaled.message


@pytest.mark.parametrize("helm", HELMS)
def test_upgrades_leave_the_replicas_to_the_api_autoscaler(cluster: Cluster, namespace: Namespace, helm: str) -> None:
    # Once an autoscaler owns the count the chart renders no `spec.replicas` (as the Airflow and Bitnami
    # charts do), so neither an upgrade nor a GitOps sync resets what the autoscaler chose.
    ns, release = namespace.name, cluster.unique("wp")
    api = f"{release}-wp-k8s-service"
    helm_install(cluster, scenarios()["defaults"], ns, release, helm)
    assert deployment(cluster, ns, api)["spec"]["replicas"] == 2
    scale(cluster, ns, api, 3)
    sets = ("api.autoscaling.enabled=true", "api.autoscaling.minReplicas=2")
    upgrade(cluster, release, ns, helm, "defaults", *sets)
    if helm == "helm":
        # Helm 4 applies server-side: `spec.replicas` now belongs to whoever scaled, so dropping it from the
        # manifest leaves the running count alone.
        assert deployment(cluster, ns, api)["spec"]["replicas"] == 3
    else:
        # Helm 3's three-way merge removes a field the previous manifest set: the server defaults it to 1
        # until the HPA acts (the one-off dip chart/README.md documents for turning an autoscaler on).
        assert deployment(cluster, ns, api)["spec"]["replicas"] == 1
    scale(cluster, ns, api, 4)
    upgrade(cluster, release, ns, helm, "defaults", *sets)
    assert deployment(cluster, ns, api)["spec"]["replicas"] == 4, "a later upgrade keeps the autoscaler's count"
