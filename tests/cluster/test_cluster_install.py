"""`helm install` of every CI scenario and of the staging environment chart, each into its own namespace
that enforces the `restricted` Pod Security Standard, with Helm 4 and Helm 3.

For each install:
* helm succeeds and prints nothing on stderr: no API server warning (PodSecurity's `warn` mode reports
  violations of Deployment pod templates that way, helm logs every `Warning` header) and no helm warning;
* every object of the release is stored, and stored as rendered (the server may add defaults, but drops
  or rewrites nothing the chart rendered);
* since no controller turns Deployments into pods here, each stored Deployment's pod template is
  submitted as a Pod with `dryRun=All`, and so is the `helm test` pod: PodSecurity's `enforce` mode
  admits each, with no warning;
* the audit log holds no PodSecurity annotation for any request in the namespace (`audit` mode).

test_cluster_pod_security.py shows each of these checks does fail on a non-compliant pod.
"""

from __future__ import annotations

import pytest

from wp_devsupport.chart import HELMS
from wp_devsupport.cluster.support import (
    Cluster,
    Namespace,
    create_existing_secrets,
    helm_install,
    pod_from_template,
    pod_security_annotations,
    release_hooks,
    release_manifest,
    release_secrets,
    scenarios,
    server_differences,
)

pytestmark = pytest.mark.integration

SCENARIOS = scenarios()


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_installs_cleanly_under_restricted_pod_security(
    cluster: Cluster, namespace: Namespace, name: str, helm: str
) -> None:
    kube, scenario = cluster.kube, SCENARIOS[name]
    release = scenario.release or cluster.unique("wp")
    create_existing_secrets(kube, namespace.name, scenario.chart_values())

    run = helm_install(cluster, scenario, namespace.name, release, helm)
    assert "STATUS: deployed" in run.stdout, run.output
    assert run.stderr == "", f"helm or the API server warned:\n{run.output}"

    manifest = release_manifest(kube, release, namespace.name)
    assert manifest, "the release has no objects"
    other_namespaces: set[str] = set()
    differences, deployments = [], []
    for obj in manifest:
        meta = obj["metadata"]
        where = meta.get("namespace", namespace.name)
        if where != namespace.name:
            other_namespaces.add(where)
        live = kube.get(obj["apiVersion"], obj["kind"], where, meta["name"])
        assert live is not None, f"{obj['kind']} {where}/{meta['name']} is not on the server"
        differences += [f"{obj['kind']}/{meta['name']}{d}" for d in server_differences(obj, live)]
        if obj["kind"] == "Deployment":
            deployments.append(live)
    assert not differences, "\n".join(differences)
    assert deployments, "every scenario runs the API"

    test_pods = [h for h in release_hooks(kube, release, namespace.name) if h["kind"] == "Pod"]
    assert test_pods or not scenario.chart_values().get("tests", {}).get("enabled", True), "no `helm test` pod"
    pods = [pod_from_template(d) for d in deployments] + test_pods
    for pod in pods:
        result = kube.create(pod, namespace.name, dry_run=True)
        assert result.status == 201, f"Pod {pod['metadata']['name']} refused: {result.message}"
        assert result.warnings == [], f"Pod {pod['metadata']['name']}: {result.warnings}"
    assert pod_security_annotations(cluster.control_plane, namespace, tuple(other_namespaces)) == []

    (stored,) = release_secrets(kube, release, namespace.name)
    assert stored["metadata"]["labels"]["status"] == "deployed"
