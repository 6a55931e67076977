"""Helpers for the chart tests: render with the real `helm`, validate against real schemas.

Used by tests/chart, and shared with tests/ci, tests/cluster and tests/observability (wp_devsupport.chart).

* `render_chart(values, show_only=..., kube_version=..., helm=...)` runs `helm template` on chart/ and
  returns the rendered objects; `HelmError` carries helm's stderr when rendering fails.
* Scenarios (chart defaults plus one CI values file each, and values-staging.yaml through the root
  chart) are rendered once per helm binary and Kubernetes version, and cached for the session.
* `KubeSchemas` validates objects strictly against the Kubernetes JSON schemas that the
  kubernetes-validate wheel ships (`v1.X.0-local-strict`) and custom resources against the CRD
  schemas converted by ci/crd-schemas.sh (bin/crd-schemas).

Everything needs bin/helm (`ci/tools.sh helm`): without it the tests are skipped, with that reason.
A missing bin/helm3 or bin/crd-schemas next to bin/helm is an error, not a skip.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

from .repo import BIN, REPO

CHART = REPO / "chart"
CRD_SCHEMAS = BIN / "crd-schemas"
#: The CI values files, chart-testing style: chart/ci/<scenario>-values.yaml.
CI_VALUES = CHART / "ci"
CI_VALUES_SUFFIX = "-values.yaml"

HELMS = ("helm", "helm3")
RELEASE = "wp"
NAMESPACE = "wp-ns"
FULLNAME = f"{RELEASE}-wp-k8s-service"
CRD_API_VERSIONS = ("monitoring.coreos.com/v1", "keda.sh/v1alpha1")

_SCHEMA_ROOT = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"


def _newest_kube_versions(count: int = 3) -> tuple[str, ...]:
    versions = []
    for entry in _SCHEMA_ROOT.iterdir():
        if m := re.fullmatch(r"v(\d+)\.(\d+)\.0-local-strict", entry.name):
            versions.append((int(m.group(1)), int(m.group(2))))
    return tuple(f"{major}.{minor}" for major, minor in sorted(versions)[-count:])


#: The three newest Kubernetes minors kubernetes-validate ships strict schemas for.
KUBE_VERSIONS = _newest_kube_versions()
NEWEST_KUBE = KUBE_VERSIONS[-1]

#: CI scenarios: name -> values file (None: the chart's own defaults plus nothing).
SCENARIOS = {path.name.removesuffix(CI_VALUES_SUFFIX): path for path in sorted(CI_VALUES.glob(f"*{CI_VALUES_SUFFIX}"))}
#: values-staging.yaml through the root (environment) chart.
STAGING = "staging"
ALL_SCENARIOS = (*SCENARIOS, STAGING)


class HelmError(Exception):
    def __init__(self, args: Sequence[str], stderr: str):
        super().__init__(stderr.strip())
        self.args_ = list(args)
        self.stderr = stderr


def helm_path(helm: str = "helm") -> Path:
    path = BIN / helm
    if not path.exists():
        if not (BIN / "helm").exists():
            pytest.skip("bin/helm is missing: run `ci/tools.sh helm` (or `make tools`) to build it")
        pytest.fail(f"bin/{helm} is missing although bin/helm exists: run `ci/tools.sh helm`")
    return path


def run_helm(args: Sequence[str], helm: str = "helm", cwd: Path = REPO) -> str:
    cmd = [str(helm_path(helm)), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise HelmError(cmd, proc.stderr or proc.stdout)
    return proc.stdout


def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_chart(
    values: dict[str, Any] | None = None,
    show_only: Sequence[str] | str | None = None,
    kube_version: str = NEWEST_KUBE,
    helm: str = "helm",
    *,
    values_files: Iterable[Path] = (),
    api_versions: Iterable[str] = CRD_API_VERSIONS,
    chart: Path = CHART,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """`helm template` the chart and return its objects (hooks such as the test pod included)."""
    return load_documents(
        render_chart_text(
            values,
            show_only,
            kube_version,
            helm,
            values_files=values_files,
            api_versions=api_versions,
            chart=chart,
            release=release,
            namespace=namespace,
        )
    )


def render_chart_text(
    values: dict[str, Any] | None = None,
    show_only: Sequence[str] | str | None = None,
    kube_version: str = NEWEST_KUBE,
    helm: str = "helm",
    *,
    values_files: Iterable[Path] = (),
    api_versions: Iterable[str] = CRD_API_VERSIONS,
    chart: Path = CHART,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> str:
    args = ["template", release, str(chart), "--namespace", namespace, "--kube-version", kube_version]
    for api_version in api_versions:
        args += ["--api-versions", api_version]
    for path in values_files:
        args += ["--values", str(path)]
    if values:
        # JSON is YAML: helm reads it from stdin without any quoting problem.
        args += ["--values", "-"]
    if isinstance(show_only, str):
        show_only = [show_only]
    for template in show_only or ():
        args += ["--show-only", template]
    cmd = [str(helm_path(helm)), *args]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        input=json.dumps(values) if values else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise HelmError(cmd, proc.stderr or proc.stdout)
    return proc.stdout


def default_values() -> dict[str, Any]:
    """The one value the chart requires (values-free rendering fails on purpose)."""
    values: dict[str, Any] = yaml.safe_load((CI_VALUES / f"defaults{CI_VALUES_SUFFIX}").read_text())
    return values


# ----------------------------------------------------------------------------- object helpers


def find(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in matches]}"
    return matches[0]


def find_all(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return spec


def pod_specs(objects: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", pod_spec(o))
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod")
    ]


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [c for c in all_containers(spec) if c["name"] == name]
    assert len(matches) == 1, f"expected one container {name}, found {len(matches)}"
    return matches[0]


def env_map(ctr: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in ctr.get("env", [])}


def env_values(ctr: dict[str, Any]) -> dict[str, str | None]:
    return {item["name"]: item.get("value") for item in ctr.get("env", [])}


# ----------------------------------------------------------------------------- schemas


@dataclass(frozen=True)
class SchemaProblem:
    obj: str
    version: str
    message: str

    def __str__(self) -> str:
        return f"{self.obj} (Kubernetes {self.version}): {self.message}"


class KubeSchemas:
    """Strict schemas of one Kubernetes minor plus the converted CRD schemas."""

    def __init__(self, version: str):
        self.version = version
        self.dir = _SCHEMA_ROOT / f"v{version}.0-local-strict"
        definitions = json.loads((self.dir / "_definitions.json").read_text())
        self._registry: referencing.Registry[Any] = referencing.Registry().with_resource(
            definitions["$id"], referencing.Resource.from_contents(definitions)
        )
        self._object_meta = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": definitions["$id"] + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        }

    @functools.cache  # noqa: B019 - a handful of instances, kept for the session
    def validator(self, api_version: str, kind: str) -> tuple[jsonschema.protocols.Validator, bool]:
        """The validator for a kind and whether it comes from a CRD."""
        group, _, version = api_version.rpartition("/")
        short_group = group.split(".")[0] if group else ""
        builtin = self.dir / (
            f"{kind.lower()}-{short_group}-{version}.json" if group else f"{kind.lower()}-{version}.json"
        )
        crd = CRD_SCHEMAS / group / f"{kind.lower()}_{version}.json"
        if builtin.exists() and (not group or "." not in group or group.endswith(".k8s.io")):
            schema = json.loads(builtin.read_text())
            cls = jsonschema.validators.validator_for(schema)
            return cls(schema, registry=self._registry), False
        if crd.exists():
            schema = json.loads(crd.read_text())
            return jsonschema.Draft7Validator(schema), True
        if group and "." in group and not group.endswith(".k8s.io") and not CRD_SCHEMAS.exists():
            pytest.fail("bin/crd-schemas is missing: run `ci/tools.sh crds` to convert the CRD schemas")
        raise LookupError(f"no schema for {kind} {api_version} in Kubernetes {self.version} or bin/crd-schemas")

    def problems(self, obj: dict[str, Any]) -> list[SchemaProblem]:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        try:
            validator, is_crd = self.validator(obj["apiVersion"], obj["kind"])
        except LookupError as exc:
            return [SchemaProblem(name, self.version, str(exc))]
        errors = list(validator.iter_errors(obj))
        if is_crd:
            # The CRD leaves metadata open; the API server validates it as ObjectMeta.
            meta_validator = jsonschema.Draft202012Validator(self._object_meta, registry=self._registry)
            errors += list(meta_validator.iter_errors(obj.get("metadata", {})))
        return [
            SchemaProblem(name, self.version, f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}")
            for e in errors
        ]


@functools.cache
def kube_schemas(version: str) -> KubeSchemas:
    return KubeSchemas(version)


# ----------------------------------------------------------------------------- scenarios


@functools.cache
def _root_chart_copy() -> Path:
    """The environment chart (repo root) with its dependency built, in a temporary copy."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="wp-root-chart-"))
    for name in ("Chart.yaml", ".helmignore", "values-staging.yaml"):
        shutil.copy2(REPO / name, work / name)
    shutil.copytree(REPO / "templates", work / "templates")
    shutil.copytree(CHART, work / "chart")
    run_helm(["dependency", "build", str(work)])
    return work


def root_chart_copy() -> Path:
    return _root_chart_copy()


@functools.cache
def _render_scenario(scenario: str, helm: str, kube_version: str) -> str:
    if scenario == STAGING:
        root = root_chart_copy()
        return render_chart_text(
            helm=helm,
            kube_version=kube_version,
            chart=root,
            values_files=[root / "values-staging.yaml"],
            # A staging cluster serves the Prometheus Operator's API: its ServiceMonitor is on.
            api_versions=CRD_API_VERSIONS,
        )
    return render_chart_text(helm=helm, kube_version=kube_version, values_files=[SCENARIOS[scenario]])


def render_scenario(scenario: str, helm: str = "helm", kube_version: str = NEWEST_KUBE) -> list[dict[str, Any]]:
    """A scenario's objects, rendered once per session (callers get fresh copies)."""
    return load_documents(_render_scenario(scenario, helm, kube_version))


def cleanup() -> None:
    """Remove the temporary root-chart copy (called at the end of the session)."""
    if _root_chart_copy.cache_info().currsize:
        shutil.rmtree(_root_chart_copy(), ignore_errors=True)


# -- pods and environment of the rendered workloads (shared by the chart test modules) --

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
    metadata = workload["metadata"] if workload["kind"] == "Pod" else workload["spec"]["template"]["metadata"]
    labels: dict[str, str] = metadata["labels"]
    return labels
