"""A small Kubernetes API client (plain `requests` with the admin client certificate) and a `helm` runner.

The client keeps what the chart tests need to see: the status code, the object and the server's
`Warning` headers of every call (PodSecurity's "would violate" warnings arrive that way).
"""

from __future__ import annotations

import builtins  # the annotations after KubeClient.list mean the type
import json
import os
import re
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ..repo import BIN
from .control_plane import ControlPlane


@dataclass(frozen=True)
class ApiResult:
    status: int
    body: dict[str, Any]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


@dataclass(frozen=True)
class Resource:
    group_version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset[str]
    #: Served in its group's preferred version (listing only those avoids seeing an object twice).
    preferred: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/api/{self.group_version}" if "/" not in self.group_version else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


_WARNING = re.compile(r'^\d{3} \S+ "(?P<text>(?:[^"\\]|\\.)*)"')


def parse_warnings(response: requests.Response) -> list[str]:
    """The texts of the response's `Warning: 299 - "..."` headers (one header per warning)."""
    values = response.raw.headers.getlist("Warning") if response.raw is not None else []
    out = []
    for value in values:
        m = _WARNING.match(value)
        out.append(m.group("text").replace('\\"', '"') if m else value)
    return out


class KubeClient:
    def __init__(self, control_plane: ControlPlane):
        self.server = control_plane.server
        self.session = requests.Session()
        # Not the environment's CA bundle (REQUESTS_CA_BUNDLE would override `verify`) nor its proxies.
        self.session.trust_env = False
        self.session.verify = str(control_plane.ca_file)
        self.session.cert = control_plane.client_cert
        self.session.headers["User-Agent"] = "wp-k8s-service-chart-tests"
        self._resources: dict[tuple[str, str], Resource] | None = None

    # ------------------------------------------------------------------ raw calls

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        *,
        retry_429: bool = True,
    ) -> ApiResult:
        for _attempt in range(10 if retry_429 else 1):
            response = self.session.request(
                method,
                self.server + path,
                data=json.dumps(body) if body is not None else None,
                params=params,
                headers={"Content-Type": content_type} if body is not None else None,
                timeout=30,
            )
            # As client-go does: a 429 with Retry-After (a watch cache still initializing, priority and
            # fairness) is retried after the delay the server asks for.
            retry_after = response.headers.get("Retry-After")
            if response.status_code != 429 or not retry_after:
                break
            time.sleep(min(float(retry_after), 1.0))
        try:
            payload = response.json()
        except ValueError:
            payload = {"message": response.text}
        return ApiResult(response.status_code, payload, parse_warnings(response))

    # ------------------------------------------------------------------ discovery

    def refresh_discovery(self) -> None:
        self._resources = None

    def resources(self) -> dict[tuple[str, str], Resource]:
        """(apiVersion, kind) -> Resource for every top-level resource the server serves."""
        if self._resources is None:
            group_versions = ["v1"]
            groups = self.call("GET", "/apis").body["groups"]
            group_versions += [v["groupVersion"] for g in groups for v in g["versions"]]
            found: dict[tuple[str, str], Resource] = {}
            preferred = {g["preferredVersion"]["groupVersion"] for g in groups} | {"v1"}
            for gv in group_versions:
                path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
                for r in self.call("GET", path).body.get("resources", []):
                    if "/" in r["name"]:
                        continue  # subresources (status, scale, ...)
                    found[(gv, r["kind"])] = Resource(
                        gv, r["kind"], r["name"], r["namespaced"], frozenset(r.get("verbs", [])), gv in preferred
                    )
            self._resources = found
        return self._resources

    def resource(self, api_version: str, kind: str) -> Resource:
        try:
            return self.resources()[(api_version, kind)]
        except KeyError:
            self.refresh_discovery()
            return self.resources()[(api_version, kind)]

    # ------------------------------------------------------------------ objects

    def path_of(self, obj: dict[str, Any], namespace: str | None = None, with_name: bool = True) -> str:
        res = self.resource(obj["apiVersion"], obj["kind"])
        ns = obj.get("metadata", {}).get("namespace") or namespace
        return res.path(ns, obj["metadata"]["name"] if with_name else None)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        result = self.call("GET", self.resource(api_version, kind).path(namespace, name))
        if result.status == 404:
            return None
        assert result.ok, f"GET {kind} {namespace}/{name}: {result.status} {result.message}"
        return result.body

    def create(self, obj: dict[str, Any], namespace: str | None = None, dry_run: bool = False) -> ApiResult:
        params = {"fieldValidation": "Strict"}
        if dry_run:
            params["dryRun"] = "All"
        return self.call("POST", self.path_of(obj, namespace, with_name=False), obj, params)

    def ensure(self, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Create an object; an existing one (409) is fine."""
        result = self.create(obj, namespace)
        assert result.ok or result.status == 409, f"creating {obj['kind']} {obj['metadata']['name']}: {result.message}"
        return result.body

    def list(
        self, resource: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        result = self.call("GET", resource.path(namespace), params=params)
        assert result.ok, f"listing {resource.plural}: {result.status} {result.message}"
        return list(result.body.get("items", []))

    def listable_resources(self) -> builtins.list[Resource]:
        """Every top-level resource type that can be listed, in its group's preferred version."""
        return sorted(
            (r for r in self.resources().values() if r.preferred and "list" in r.verbs),
            key=lambda r: (r.group_version, r.plural),
        )

    def find_everywhere(self, label_selector: str) -> builtins.list[str]:
        """`kind namespace/name` of every object (of every listable type, in every namespace) matching."""
        found = []
        for res in self.listable_resources():
            for item in self.list(res, None, label_selector):
                meta = item["metadata"]
                found.append(f"{res.kind} {meta.get('namespace', '')}/{meta['name']}")
        return found

    def wait_for(
        self, api_version: str, kind: str, namespace: str | None, name: str, *, condition: str, timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            obj = self.get(api_version, kind, namespace, name)
            conditions = {c["type"]: c["status"] for c in ((obj or {}).get("status") or {}).get("conditions") or []}
            if obj is not None and conditions.get(condition) == "True":
                return obj
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind} {name} not {condition} after {timeout}s: {conditions}")
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------- helm


@dataclass(frozen=True)
class HelmRun:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n--- exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


def isolated_helm_env(home: Path) -> dict[str, str]:
    """The environment of a helm run that reads and writes nothing of the user's: Helm's cache, config
    and data, and client-go's discovery cache, all under `home`."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        # client-go's discovery cache would otherwise go to ~/.kube/cache.
        "KUBECACHEDIR": str(home / "kube-cache"),
    }


class Helm:
    """Runs bin/helm or bin/helm3 against the control plane, with its own (empty) Helm and kube caches."""

    def __init__(self, control_plane: ControlPlane, home: Path):
        self.kubeconfig = control_plane.kubeconfig
        self.env = isolated_helm_env(home)

    def __call__(
        self, args: Sequence[str], helm: str = "helm", check: bool = True, values: dict[str, Any] | None = None
    ) -> HelmRun:
        binary = BIN / helm
        cmd = [str(binary), *args, "--kubeconfig", str(self.kubeconfig)]
        if values is not None:
            cmd += ["--values", "-"]
        proc = subprocess.run(
            cmd,
            input=json.dumps(values) if values is not None else None,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=180,
            check=False,
        )
        run = HelmRun(cmd, proc.returncode, proc.stdout, proc.stderr)
        if check:
            assert run.returncode == 0, run.output
        return run


def objects_by_key(objects: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str | None, str], dict[str, Any]]:
    return {(o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}
