"""Helpers of the live-cluster chart tests: scenarios, installs, pod-template checks, leftovers.

The chart-side helpers (values files, the root-chart copy with its dependency built, YAML loading)
come from wp_devsupport.chart, the module the chart tests use.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..chart import CHART, SCENARIOS, STAGING, load_documents, root_chart_copy
from ..ci_files import KIND_VALUES
from ..repo import REPO
from .control_plane import ControlPlane
from .kube_client import Helm, HelmRun, KubeClient

#: The application chart's key in the environment chart's values.
SUBCHART = "wp-k8s-service"
CRD_DIR = REPO / "bin" / "crd-schemas" / "crds"

RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "warn", "audit")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}
RELEASE_LABEL = "app.kubernetes.io/instance"
#: What a Secret, and so a Helm release record, may hold.
SECRET_SIZE_LIMIT = 1024 * 1024
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass
class Cluster:
    """The session's control plane with a client, a helm runner and a name counter."""

    control_plane: ControlPlane
    kube: KubeClient
    helm: Helm
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def unique(self, prefix: str) -> str:
        return f"{prefix}{next(self._names)}"


@dataclass(frozen=True)
class Namespace:
    name: str
    #: Byte offset of the audit log when the namespace was created: events after it belong to the test.
    audit_offset: int


# ---------------------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    values_files: tuple[Path, ...]
    #: Installed through the environment chart at the repository root (values nested under `wp-k8s-service:`).
    root: bool = False
    set_args: tuple[str, ...] = ()
    #: The README's release name for the environment chart; chart scenarios get unique names instead.
    release: str | None = None

    def chart(self) -> Path:
        return root_chart_copy() if self.root else CHART

    def chart_values(self) -> dict[str, Any]:
        """The application chart's values from the scenario's files (merged shallowly per top-level key)."""
        merged: dict[str, Any] = {}
        for path in self.values_files:
            values = yaml.safe_load(path.read_text()) or {}
            if self.root:
                values = values.get(SUBCHART, {})
            for key, value in values.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
        return merged

    def helm_args(self) -> list[str]:
        args = []
        for path in self.values_files:
            args += ["--values", str(path)]
        for item in self.set_args:
            args += ["--set", item]
        return args


def scenarios() -> dict[str, Scenario]:
    found = {name: Scenario(name, (path,)) for name, path in SCENARIOS.items()}
    found[STAGING] = Scenario(STAGING, (REPO / "values-staging.yaml",), root=True, release="wp-k8s-service")
    # The CI files skip the API checks because they are also rendered without a cluster; here the
    # cluster serves both CRDs, so helm's own capability check must find them.
    found["worker-deployment-keda-live-api-check"] = Scenario(
        "worker-deployment-keda-live-api-check",
        (SCENARIOS["worker-deployment-keda"],),
        set_args=("worker.keda.skipApiCheck=false", "serviceMonitor.skipApiCheck=false"),
    )
    if KIND_VALUES.exists():
        root = SUBCHART in (yaml.safe_load(KIND_VALUES.read_text()) or {})
        found["kind-values"] = Scenario("kind-values", (KIND_VALUES,), root=root)
    return found


# ---------------------------------------------------------------------------------------- setup


def install_crds(kube: KubeClient) -> list[str]:
    """Create the prometheus-operator and KEDA CRDs and wait until each is Established."""
    names = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in load_documents(path.read_text()):
            kube.ensure(crd)
            names.append(crd["metadata"]["name"])
    paths = []
    for name in names:
        crd = kube.wait_for("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name, condition="Established")
        version = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
        paths.append(f"/apis/{crd['spec']['group']}/{version}/{crd['spec']['names']['plural']}")
    # Established means served, but listing answers 429 (after holding the request about a second) until
    # the resource's watch cache is filled: wait for all of them at once.
    deadline = time.monotonic() + 30

    def until_listable(path: str) -> None:
        while (status := kube.call("GET", path, retry_429=False).status) != 200:
            assert time.monotonic() < deadline, f"{path} still answers {status}"
            time.sleep(0.1)

    with ThreadPoolExecutor(len(paths)) as pool:
        list(pool.map(until_listable, paths))
    kube.refresh_discovery()
    return names


def create_namespace(cluster: Cluster, name: str, labels: dict[str, str] | None = None) -> Namespace:
    offset = cluster.control_plane.log_offsets()["audit"]
    result = cluster.kube.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
    )
    assert result.ok, result.message
    return Namespace(name, offset)


def secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def create_existing_secrets(kube: KubeClient, namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The Secrets a scenario expects to exist already (as its README says to create them first)."""
    redis = values.get("redis", {})
    wanted: dict[str, dict[str, str]] = {}
    if name := redis.get("existingSecret"):
        wanted.setdefault(name, {})[redis.get("existingSecretPasswordKey", "redis-password")] = "pre-existing-password"
    if name := redis.get("existingUrlSecret"):
        url = "redis://:pre-existing-password@redis-master.redis.svc.cluster.local:6379/0"
        wanted.setdefault(name, {})[redis.get("existingUrlSecretKey", "redis-url")] = url
    if name := redis.get("tls", {}).get("existingCaSecret"):
        wanted.setdefault(name, {})[redis["tls"].get("caSecretKey", "ca.crt")] = "-----BEGIN CERTIFICATE-----\n"
    if name := values.get("worker", {}).get("clone", {}).get("credentialsSecret"):
        wanted.setdefault(name, {})["blog.example.com"] = "user:application password"
    created = []
    for name, data in wanted.items():
        result = kube.create(secret(name, namespace, data))
        assert result.ok, result.message
        created.append(result.body)
    return created


# ---------------------------------------------------------------------------------------- helm


def helm_install(
    cluster: Cluster,
    scenario: Scenario,
    namespace: str,
    release: str,
    helm: str = "helm",
    *,
    extra: tuple[str, ...] = (),
    chart: Path | None = None,
    check: bool = True,
) -> HelmRun:
    args = ["install", release, str(chart or scenario.chart()), "--namespace", namespace, *scenario.helm_args(), *extra]
    return cluster.helm(args, helm, check=check)


def release_secrets(kube: KubeClient, release: str, namespace: str) -> list[dict[str, Any]]:
    return kube.list(kube.resource("v1", "Secret"), namespace, f"owner=helm,name={release}")


def decode_release(release_secret: dict[str, Any]) -> dict[str, Any]:
    """Helm's release record: base64 (Secret data) of base64 of gzip of JSON."""
    raw = base64.b64decode(base64.b64decode(release_secret["data"]["release"]))
    return dict(json.loads(gzip.decompress(raw)))


def release_record(kube: KubeClient, release: str, namespace: str) -> dict[str, Any]:
    """The newest revision's record, read from the server as Helm 3 and 4 store it (what `helm get` reads,
    without starting a helm process per question)."""
    secrets = release_secrets(kube, release, namespace)
    assert secrets, f"no release {release} in {namespace}"
    return decode_release(max(secrets, key=lambda s: int(s["metadata"]["labels"]["version"])))


def release_manifest(kube: KubeClient, release: str, namespace: str) -> list[dict[str, Any]]:
    """The objects of the release (`helm get manifest`)."""
    return load_documents(release_record(kube, release, namespace)["manifest"])


def release_hooks(kube: KubeClient, release: str, namespace: str) -> list[dict[str, Any]]:
    """The hook objects of the release, such as the `helm test` pod (`helm get hooks`)."""
    hooks = release_record(kube, release, namespace).get("hooks") or []
    return [doc for hook in hooks for doc in load_documents(hook["manifest"])]


# ---------------------------------------------------------------------------------------- checks


def pod_from_template(workload: dict[str, Any], suffix: str = "template-check") -> dict[str, Any]:
    """The Pod a controller would create from a workload's pod template (there is no controller here)."""
    template = workload["spec"]["template"]
    meta = workload["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{meta['name'][: 62 - len(suffix)]}-{suffix}",
            "namespace": meta["namespace"],
            "labels": template["metadata"].get("labels", {}),
            "annotations": template["metadata"].get("annotations", {}),
        },
        "spec": template["spec"],
    }


def pod_security_annotations(
    control_plane: ControlPlane, namespace: Namespace, extra_namespaces: tuple[str, ...] = ()
) -> list[str]:
    """PodSecurity audit annotations (violations, exemptions, enforce-policy denials) on requests in the namespace."""
    found = []
    for event in control_plane.audit_events(namespace.audit_offset):
        ref = event.get("objectRef") or {}
        if ref.get("namespace") not in (namespace.name, *extra_namespaces):
            continue
        for key, value in (event.get("annotations") or {}).items():
            if key.startswith("pod-security.kubernetes.io/") and key != "pod-security.kubernetes.io/enforce-policy":
                found.append(f"{event['verb']} {ref.get('resource')}/{ref.get('name')}: {key}={value}")
    return found


def write_requests(control_plane: ControlPlane, since: int, namespace: str, user_agent_prefix: str) -> list[str]:
    return [
        f"{e['verb']} {e['requestURI']}"
        for e in control_plane.audit_events(since)
        if e["verb"] in WRITE_VERBS
        and (e.get("objectRef") or {}).get("namespace") == namespace
        and e.get("userAgent", "").startswith(user_agent_prefix)
    ]


#: Go's `omitempty`: the server does not return zero values, which mean the same as absent.
_EMPTY: tuple[object, ...] = (None, {}, [], "", 0, False)


def server_differences(rendered: Any, live: Any, path: str = "") -> list[str]:
    """Where the stored object lost or changed something the chart rendered (server defaults may add fields).

    The API server omits zero values, so a rendered `{}`/`[]`/`""`/`0`/`false`/null missing there is fine.
    """
    if isinstance(rendered, dict):
        if not isinstance(live, dict):
            return [f"{path or '<root>'}: rendered a mapping, server has {live!r}"]
        out = []
        for key, value in rendered.items():
            if key not in live:
                if value not in _EMPTY:
                    out.append(f"{path}.{key}: dropped by the server (rendered {value!r})")
            else:
                out += server_differences(value, live[key], f"{path}.{key}")
        return out
    if isinstance(rendered, list):
        if not isinstance(live, list) or len(live) != len(rendered):
            return [f"{path}: rendered {rendered!r}, server has {live!r}"]
        return [
            d
            for i, (r, lv) in enumerate(zip(rendered, live, strict=True))
            for d in server_differences(r, lv, f"{path}[{i}]")
        ]
    if rendered != live:
        return [f"{path}: rendered {rendered!r}, server has {live!r}"]
    return []


def leftovers(kube: KubeClient, release: str, namespaces: tuple[str, ...]) -> list[str]:
    """Objects of every listable type, cluster-wide, labelled with the release and in one of `namespaces`
    (or cluster-scoped)."""
    found = kube.find_everywhere(f"{RELEASE_LABEL}={release}")
    return [f for f in found if f.split(" ", 1)[1].split("/", 1)[0] in ("", *namespaces)]
