"""`helm uninstall` leaves nothing of the release behind, except what the chart documents it keeps:
the chart-managed Redis Secret with `redis.managedSecret.keepOnUninstall: true`, and Secrets it never
owned (`redis.existingSecret`)."""

from __future__ import annotations

import base64

import pytest

from wp_devsupport.chart import HELMS
from wp_devsupport.cluster.support import (
    Cluster,
    Namespace,
    create_existing_secrets,
    helm_install,
    leftovers,
    release_manifest,
    release_secrets,
    scenarios,
)

pytestmark = pytest.mark.integration

SCENARIOS = scenarios()
#: Every scenario with Helm 4; with Helm 3 the two Secret policies.
UNINSTALLS = [(name, "helm") for name in sorted(SCENARIOS)] + [("defaults", "helm3"), ("embedded-redis", "helm3")]


@pytest.mark.parametrize(("name", "helm"), UNINSTALLS)
def test_uninstall_leaves_nothing_of_the_release(cluster: Cluster, namespace: Namespace, name: str, helm: str) -> None:
    kube, ns, scenario = cluster.kube, namespace.name, SCENARIOS[name]
    release = scenario.release or cluster.unique("wp")
    values = scenario.chart_values()
    existing = create_existing_secrets(kube, ns, values)
    helm_install(cluster, scenario, ns, release, helm)
    manifest = release_manifest(cluster.kube, release, ns)
    namespaces = tuple({o["metadata"].get("namespace", ns) for o in manifest})
    # The search below finds exactly the release's objects while it is installed (so it can find leftovers).
    rendered = sorted(f"{o['kind']} {o['metadata'].get('namespace', ns)}/{o['metadata']['name']}" for o in manifest)
    assert sorted(leftovers(kube, release, namespaces)) == rendered

    run = cluster.helm(["uninstall", release, "--namespace", ns], helm)
    keep = values.get("redis", {}).get("managedSecret", {}).get("keepOnUninstall", False)
    managed = next((o for o in manifest if o["kind"] == "Secret"), None)

    expected = []
    if managed is not None and keep:
        expected = [f"Secret {ns}/{managed['metadata']['name']}"]
        assert "These resources were kept due to the resource policy" in run.stdout, run.output
        assert f"[Secret] {managed['metadata']['name']}" in run.stdout, run.output
    # Every listable type, in every namespace the release used (and cluster-scoped ones).
    assert leftovers(kube, release, namespaces) == expected
    # Each object by name too (objects whose labels a user changed would escape the label search).
    for obj in manifest:
        meta = obj["metadata"]
        if f"{obj['kind']} {ns}/{meta['name']}" not in expected:
            assert kube.get(obj["apiVersion"], obj["kind"], meta.get("namespace", ns), meta["name"]) is None
    assert release_secrets(kube, release, ns) == [], "helm's release records are gone"
    # Secrets the chart only referenced are untouched.
    for before in existing:
        after = kube.get("v1", "Secret", ns, before["metadata"]["name"])
        assert after is not None
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


@pytest.mark.parametrize("helm", HELMS)
def test_kept_secret_is_adopted_with_its_password_by_a_reinstall(
    cluster: Cluster, namespace: Namespace, helm: str
) -> None:
    """keepOnUninstall: true -- the generated password survives an uninstall, and installing the same
    release name again adopts the Secret and keeps using that password (as chart/README.md says)."""
    kube, ns, release = cluster.kube, namespace.name, cluster.unique("wp")
    name = f"{release}-wp-k8s-service-redis"
    scenario = SCENARIOS["embedded-redis"]
    helm_install(cluster, scenario, ns, release, helm)
    first = kube.get("v1", "Secret", ns, name)
    assert first is not None
    assert first["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    cluster.helm(["uninstall", release, "--namespace", ns], helm)
    kept = kube.get("v1", "Secret", ns, name)
    assert kept is not None
    assert kept["data"] == first["data"]

    run = helm_install(cluster, scenario, ns, release, helm)
    assert run.stderr == "", run.output
    adopted = kube.get("v1", "Secret", ns, name)
    assert adopted is not None
    assert base64.b64decode(adopted["data"]["redis-password"]) == base64.b64decode(first["data"]["redis-password"])
    assert any(o["kind"] == "Secret" for o in release_manifest(cluster.kube, release, ns)), "owned by the new release"
