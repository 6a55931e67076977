"""Every scenario renders with Helm 4 and Helm 3, identically, lints strictly, and every object it
renders is valid against the strict Kubernetes schemas of the three newest minors (and the CRD
schemas for custom resources)."""

from __future__ import annotations

import re
import tarfile
from collections import Counter
from typing import Any

import pytest

from wp_devsupport.chart import (
    ALL_SCENARIOS,
    CHART,
    HELMS,
    KUBE_VERSIONS,
    SCENARIOS,
    STAGING,
    all_containers,
    kube_schemas,
    pod_specs,
    render_scenario,
    root_chart_copy,
    run_helm,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_three_newest_kubernetes_versions_are_checked() -> None:
    assert len(KUBE_VERSIONS) == 3, KUBE_VERSIONS
    assert tuple(sorted(KUBE_VERSIONS, key=lambda v: tuple(map(int, v.split("."))))) == KUBE_VERSIONS


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
def test_objects_match_strict_schemas(scenario: str, helm: str, kube_version: str) -> None:
    objects = render_scenario(scenario, helm, kube_version)
    assert objects, f"{scenario} rendered nothing"
    schemas = kube_schemas(kube_version)
    problems = [str(p) for obj in objects for p in schemas.problems(obj)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
def test_helm3_and_helm4_render_the_same(scenario: str) -> None:
    helm4, helm3 = (_normalised(render_scenario(scenario, helm)) for helm in HELMS)
    assert helm3 == helm4


def _normalised(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mask what is random by design: a generated password and the checksum derived from it."""
    for obj in objects:
        if obj["kind"] == "Secret" and "redis-password" in obj.get("data", {}):
            obj["data"]["redis-password"] = "<generated>"
        if obj["kind"] == "Deployment":
            annotations = obj["spec"]["template"]["metadata"].get("annotations", {})
            if "checksum/redis-secret" in annotations:
                annotations["checksum/redis-secret"] = "<checksum>"
    return sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"]))


@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
def test_objects_are_consistent(scenario: str) -> None:
    """What schemas cannot see: names, references between fields, duplicates."""
    objects = render_scenario(scenario)
    problems: list[str] = []
    keys = Counter((o["kind"], o["metadata"]["name"]) for o in objects)
    problems += [f"{kind}/{name} rendered {n} times" for (kind, name), n in keys.items() if n > 1]
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] in ("Service", "Deployment", "Pod", "NetworkPolicy") and not _DNS_LABEL.match(name):
            problems.append(f"{obj['kind']}/{name}: not a DNS label")
        if len(name) > 63:
            problems.append(f"{obj['kind']}/{name}: longer than 63 characters")
    for where, spec in pod_specs(objects):
        volumes = [v["name"] for v in spec.get("volumes", [])]
        problems += [f"{where}: volume {v} declared twice" for v, n in Counter(volumes).items() if n > 1]
        containers = all_containers(spec)
        names = Counter(c["name"] for c in containers)
        problems += [f"{where}: container {c} declared twice" for c, n in names.items() if n > 1]
        for ctr in containers:
            env_names = Counter(e["name"] for e in ctr.get("env", []))
            problems += [f"{where}/{ctr['name']}: env {e} set twice" for e, n in env_names.items() if n > 1]
            problems += [
                f"{where}/{ctr['name']}: mounts undeclared volume {m['name']}"
                for m in ctr.get("volumeMounts", [])
                if m["name"] not in volumes
            ]
            ports = {p.get("name") for p in ctr.get("ports", [])}
            problems += [f"{where}/{ctr['name']}: port name {p} too long" for p in ports if p and len(p) > 15]
            for probe_kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = ctr.get(probe_kind, {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{where}/{ctr['name']}: {probe_kind} uses unknown port {port}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chart_lints_strictly(scenario: str, helm: str) -> None:
    output = run_helm(["lint", "--strict", str(CHART), "--values", str(SCENARIOS[scenario])], helm)
    assert "0 chart(s) failed" in output, output


@pytest.mark.parametrize("helm", HELMS)
def test_root_chart_lints_strictly(helm: str) -> None:
    root = root_chart_copy()
    # `helm lint` has no --api-versions: the ServiceMonitor's API check, which a staging cluster passes, is
    # skipped here (the render tests keep it).
    skip_check = "wp-k8s-service.serviceMonitor.skipApiCheck=true"
    values = ["--values", str(root / "values-staging.yaml"), "--set", skip_check]
    output = run_helm(["lint", "--strict", str(root), *values], helm)
    assert "0 chart(s) failed" in output, output


def test_root_chart_package_holds_only_chart_files(tmp_path) -> None:
    """The root .helmignore keeps the checkout out of the package and of every release Secret."""
    root = root_chart_copy()
    # A stand-in for the rest of the repository: none of it may end up in the package.
    for junk in (
        "worker_app/app.py",
        "tests/test_x.py",
        "ci/tools.sh",
        "README.md",
        "Makefile",
        ".venv/x",
        "bin/helm",
        "chart-notes.txt",
        "values.json",
        "docs/contract.md",
        "pyproject.toml",
    ):
        path = root / junk
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    run_helm(["package", str(root), "--destination", str(tmp_path)])
    (package,) = tmp_path.glob("*.tgz")
    with tarfile.open(package) as tar:
        names = sorted(n.split("/", 1)[1] for n in tar.getnames())
    outside_dependency = [n for n in names if not n.startswith("charts/wp-k8s-service/")]
    assert outside_dependency == ["Chart.lock", "Chart.yaml", "templates/NOTES.txt", "values-staging.yaml"]


def test_chart_package_holds_no_source_or_ci_values(tmp_path) -> None:
    """chart/.helmignore keeps the dashboards' source code and the CI values files out of the package."""
    run_helm(["package", str(CHART), "--destination", str(tmp_path)])
    (package,) = tmp_path.glob("*.tgz")
    with tarfile.open(package) as tar:
        names = sorted(n.split("/", 1)[1] for n in tar.getnames())
    assert [n for n in names if n.endswith((".py", ".pyc")) or n.startswith(("ci/", "dashboards/wp_"))] == []
    committed = sorted(f"dashboards/{p.name}" for p in (CHART / "dashboards").glob("*.json"))
    assert committed
    assert [n for n in names if n.startswith("dashboards/")] == committed
    assert {"Chart.yaml", "values.yaml", "values.schema.json", "README.md"} <= set(names)


def test_staging_renders_through_the_root_chart() -> None:
    objects = render_scenario(STAGING)
    kinds = Counter(o["kind"] for o in objects)
    assert kinds["Deployment"] == 1
    assert all(o["metadata"]["labels"]["app.kubernetes.io/name"] == "wp-k8s-service" for o in objects)


def test_crd_schemas_are_the_pinned_versions_and_strict() -> None:
    from wp_devsupport.chart import CRD_SCHEMAS, find

    objects = render_scenario("worker-deployment-keda")
    if not (CRD_SCHEMAS / "SOURCES").exists():
        pytest.fail("bin/crd-schemas is missing: run `ci/tools.sh crds` to convert the CRD schemas")
    sources = (CRD_SCHEMAS / "SOURCES").read_text()
    assert "prometheus-operator v0.95.2" in sources
    assert "keda v2.20.2" in sources
    schemas = kube_schemas(KUBE_VERSIONS[-1])
    monitor, scaled = find(objects, "ServiceMonitor"), find(objects, "ScaledObject")
    assert not schemas.problems(monitor)
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    scaled["spec"]["triggers"][0]["authRef"] = {"name": "x"}
    scaled["metadata"]["labelz"] = {}
    assert any("intervall" in p.message for p in schemas.problems(monitor))
    problems = [p.message for p in schemas.problems(scaled)]
    assert any("authRef" in p for p in problems), problems
    assert any("labelz" in p for p in problems), "metadata is checked as ObjectMeta"
