"""Support of the pod-level tests (tests/node/): the chart installed on the local single-node Kubernetes
(wp_devsupport.cluster.node), its workers consuming from a Redis on the host, and what the tests measure.

* `KubeApi`: a small client of the node's API server built from its kubeconfig (admin certificate);
  `PodWatcher` follows a namespace's pods through a watch and records, on the host's clock, when each
  pod was first seen, became Ready, was asked to stop, had its worker container exit and disappeared.
* `NodeHelm`: bin/helm (Helm 4) against the node, with a Helm home of its own.
* `release_values()`: the chart's values for one worker mode (`MODES`), pointed at a Redis on the host
  by the node's bridge address, with the password from an existing Secret, mounted as a file.
* `worker_metrics()`: the workers' `/metrics` reached through the chart's metrics Service. That Service
  is headless (every pod is a target, as Prometheus needs), so kube-proxy gives it no virtual IP: its
  name is resolved through the node's cluster DNS, which answers with the addresses of its pods.
* `PingStream`: pings sent in batches over time from a thread, for the disruption tests.
* `namespace_report()`: `kubectl describe` and the container logs of a namespace, for a failure.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from ..chart import CHART
from ..faults import AofRedis, send_pings
from ..node_images import normalized
from ..repo import BIN, REPO
from .kube_client import HelmRun, isolated_helm_env
from .node import Node, dns_query

#: Values of the kind job: the worker and API images (never pulled), small resources.
KIND_VALUES = REPO / "ci" / "kind" / "kind-values.yaml"
SUBCHART = "wp-k8s-service"
WORKER_CONTAINER = "worker"
REDIS_SECRET = "host-redis"
REDIS_SECRET_KEY = "redis-password"

#: The chart's worker modes: the worker as a container of every API pod, as a native sidecar (an init
#: container with restartPolicy Always) of the API pods, or in a Deployment of its own.
MODES: dict[str, dict[str, Any]] = {
    "sidecar": {"worker": {"mode": "sidecar", "nativeSidecar": False}},
    # A native sidecar stops only after the API exited: its grace period must cover the API's and its own
    # shutdown (the chart refuses less), as in chart/ci/native-sidecar-values.yaml.
    "native-sidecar": {
        "worker": {"mode": "sidecar", "nativeSidecar": True, "terminationGracePeriodSeconds": 45},
        "api": {"terminationGracePeriodSeconds": 20},
    },
    "deployment": {"worker": {"mode": "deployment"}},
}

RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "warn", "audit")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}


class NodeTestError(AssertionError):
    """A check of the node tests failed; the message says what was expected and what was seen."""


# ---------------------------------------------------------------------------------------- values


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def kind_chart_values() -> dict[str, Any]:
    """The application chart's part of ci/kind/kind-values.yaml (images, resources, short shutdown)."""
    values: dict[str, Any] = yaml.safe_load(KIND_VALUES.read_text()) or {}
    return dict(values.get(SUBCHART, values))


def release_values(mode: str, redis_host: str, redis_port: int, **extra: Any) -> dict[str, Any]:
    """The chart's values for MODE: the kind job's images and sizes, one API pod (and one worker pod in
    deployment mode), the Redis at REDIS_HOST:REDIS_PORT with its password in the Secret `host-redis`
    (mounted as a file: `REDIS_PASSWORD_FILE`), no embedded Redis, no collector (tracing off) and no
    ServiceMonitor (the node serves no prometheus-operator CRDs). EXTRA is merged last."""
    base = kind_chart_values()
    values = deep_merge(
        base,
        {
            "embeddedRedis": {"enabled": False},
            "redis": {
                "host": redis_host,
                "port": redis_port,
                "existingSecret": REDIS_SECRET,
                "existingSecretPasswordKey": REDIS_SECRET_KEY,
                "passwordMode": "file",
            },
            "api": {"replicaCount": 1},
            "worker": {"replicaCount": 1, "queues": ["ping"]},
            "otel": {"enabled": False},
            "serviceMonitor": {"enabled": False},
            "grafanaDashboards": {"enabled": False},
            "prometheusRule": {"enabled": False},
        },
    )
    values = deep_merge(values, MODES[mode])
    return deep_merge(values, extra)


def fullname(release: str) -> str:
    return release if SUBCHART in release else f"{release}-{SUBCHART}"


# ---------------------------------------------------------------------------------------- API client


def parse_time(stamp: str) -> float:
    """A Kubernetes RFC 3339 timestamp (`2026-11-30T20:01:02Z`) as Unix seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class KubeApi:
    """GET/POST/PATCH/DELETE against the API server of a kubeconfig (certificate files, as the node writes)."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.kubeconfig = kubeconfig
        self.server: str = cluster["server"]
        self.ca_file: str = cluster["certificate-authority"]
        self.cert: tuple[str, str] = (user["client-certificate"], user["client-key"])
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = self.ca_file
        self.session.cert = self.cert

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: str) -> dict[str, Any]:
        headers = {"Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json"}
        response = self.session.request(
            method, self.server + path, data=json.dumps(body) if body is not None else None,
            params=params or None, headers=headers, timeout=30,
        )  # fmt: skip
        if response.status_code >= 300:
            raise NodeTestError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        result: dict[str, Any] = response.json()
        return result

    def get(self, path: str, **params: str) -> dict[str, Any] | None:
        response = self.session.get(self.server + path, params=params or None, timeout=30)
        if response.status_code == 404:
            return None
        if response.status_code >= 300:
            raise NodeTestError(f"GET {path}: {response.status_code} {response.text[:500]}")
        result: dict[str, Any] = response.json()
        return result

    def pods(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else {}
        body = self.get(f"/api/v1/namespaces/{namespace}/pods", **params) or {}
        return list(body.get("items", []))

    def create_namespace(self, name: str, labels: dict[str, str]) -> None:
        self.call("POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels}})

    def delete_namespace(self, name: str) -> None:
        self.session.delete(f"{self.server}/api/v1/namespaces/{name}", timeout=30)

    def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {"metadata": {"name": name}, "type": "Opaque", "stringData": data}
        self.call("POST", f"/api/v1/namespaces/{namespace}/secrets", body)

    def delete_pod(self, namespace: str, name: str) -> dict[str, Any]:
        """`kubectl delete pod` (the pod's own grace period)."""
        return self.call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")

    def deployments(self, namespace: str) -> list[dict[str, Any]]:
        body = self.get(f"/apis/apps/v1/namespaces/{namespace}/deployments") or {}
        return list(body.get("items", []))

    def events(self, namespace: str) -> list[dict[str, Any]]:
        body = self.get(f"/api/v1/namespaces/{namespace}/events") or {}
        return list(body.get("items", []))


# ---------------------------------------------------------------------------------------- pods


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def container_status(pod: dict[str, Any], name: str) -> dict[str, Any] | None:
    status = pod.get("status") or {}
    for entry in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if entry["name"] == name:
            found: dict[str, Any] = entry
            return found
    return None


def worker_pods(api: KubeApi, namespace: str, *, live_only: bool = True) -> list[dict[str, Any]]:
    """The pods that run a worker container (API pods in sidecar mode, worker pods otherwise)."""
    pods = [p for p in api.pods(namespace) if container_status(p, WORKER_CONTAINER) is not None or _has_worker(p)]
    if live_only:
        pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return sorted(pods, key=lambda p: p["metadata"]["name"])


def _has_worker(pod: dict[str, Any]) -> bool:
    spec = pod["spec"]
    return any(c["name"] == WORKER_CONTAINER for c in spec.get("containers", []) + spec.get("initContainers", []))


def pod_problems(pod: dict[str, Any]) -> list[str]:
    """Why a pod is not Ready: waiting or terminated containers with their reasons."""
    out = []
    status = pod.get("status") or {}
    for entry in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        for state, detail in (entry.get("state") or {}).items():
            if state != "running":
                out.append(f"{entry['name']} {state}: {detail.get('reason', '')} {detail.get('message', '')}".strip())
        if not entry.get("ready") and "running" in (entry.get("state") or {}):
            out.append(f"{entry['name']} running, not ready")
    return out


def wait_deployments_ready(api: KubeApi, namespace: str, timeout: float = 180) -> list[dict[str, Any]]:
    """Every Deployment rolled out (observed, updated, available == desired, no old pods left) and every
    pod of the namespace Ready; returns the pods. Raises with the pods' states when not reached."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        deployments = api.deployments(namespace)
        pods = [p for p in api.pods(namespace) if not p["metadata"].get("deletionTimestamp")]
        lagging = []
        for d in deployments:
            want = d["spec"].get("replicas", 1)
            s = d.get("status") or {}
            done = (
                s.get("observedGeneration", 0) >= d["metadata"]["generation"]
                and s.get("updatedReplicas", 0) == want
                and s.get("availableReplicas", 0) == want
                and s.get("replicas", 0) == want
            )
            if not done:
                lagging.append(f"{d['metadata']['name']}: {json.dumps(s.get('conditions', []))[:300]}")
        not_ready = [f"{p['metadata']['name']}: {pod_problems(p)}" for p in pods if not is_ready(p)]
        every_pod_gone = all(
            not p["metadata"].get("deletionTimestamp") for p in api.pods(namespace)
        )  # old pods still stopping count as not rolled out
        if deployments and not lagging and not not_ready and every_pod_gone:
            return pods
        state = f"deployments not rolled out: {lagging}; pods not Ready: {not_ready}"
        time.sleep(0.5)
    raise NodeTestError(f"namespace {namespace} not ready after {timeout:.0f}s: {state}")


@dataclass
class PodHistory:
    """What happened to one pod, on the host's clock (`time.time()`)."""

    name: str
    first_seen: float
    ready_at: float | None = None
    #: When the pod was first seen with a deletionTimestamp (the DELETE request, to the watch's latency).
    deleting_seen: float | None = None
    #: The pod's deletionTimestamp minus its deletionGracePeriodSeconds: when the deletion was requested
    #: (the API server sets deletionTimestamp to that instant plus the grace period; seconds resolution).
    deletion_requested: float | None = None
    grace_period: int | None = None
    #: `finishedAt` of the worker container's last termination (seconds resolution).
    worker_finished: float | None = None
    worker_exit_code: int | None = None
    worker_restarts: int = 0
    #: Host times at which the worker container's restart count went up, and it was ready again after.
    restart_seen: list[float] = field(default_factory=list)
    ready_again: list[float] = field(default_factory=list)
    gone_at: float | None = None
    _worker_ready: bool = False

    @property
    def shutdown_seconds(self) -> float | None:
        """From the deletion request to the pod object's removal (after every container stopped)."""
        if self.gone_at is None:
            return None
        start = min(x for x in (self.deletion_requested, self.deleting_seen) if x is not None)
        return self.gone_at - start

    @property
    def worker_stop_seconds(self) -> float | None:
        """From the deletion request to the worker container's exit (seconds resolution)."""
        if self.worker_finished is None or self.deletion_requested is None:
            return None
        return self.worker_finished - self.deletion_requested


class PodWatcher:
    """Watches a namespace's pods from a thread (watch requests of 5 s each, for at most `max_seconds`)
    and keeps a PodHistory per pod."""

    def __init__(self, api: KubeApi, namespace: str, max_seconds: float = 600) -> None:
        self.api = api
        self.namespace = namespace
        self.max_seconds = max_seconds
        self.history: dict[str, PodHistory] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)
        self._synced = threading.Event()

    def __enter__(self) -> PodWatcher:
        self._thread.start()
        if not self._synced.wait(30):
            raise NodeTestError(f"the pod watch of {self.namespace} did not start within 30 s: {self.errors}")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def snapshot(self) -> dict[str, PodHistory]:
        with self._lock:
            return dict(self.history)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        path = f"{self.api.server}/api/v1/namespaces/{self.namespace}/pods"
        version = ""
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                if not version:
                    listing = self.api.session.get(path, timeout=30).json()
                    for pod in listing.get("items", []):
                        self._observe("ADDED", pod)
                    version = listing["metadata"]["resourceVersion"]
                    self._synced.set()
                # Short watches (5 s), so that stopping the watcher never waits long for the server.
                params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": "5", "allowWatchBookmarks": "1"}
                with self.api.session.get(path, params=params, stream=True, timeout=(10, 20)) as response:
                    for line in response.iter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        if event["type"] == "ERROR":  # 410 Gone: the version is too old, list again
                            version = ""
                            break
                        version = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self._observe(event["type"], event["object"])
            except (requests.RequestException, ValueError, KeyError) as e:
                self.errors.append(f"{time.time():.1f} {type(e).__name__}: {e}")
                version = ""
                time.sleep(0.5)

    def _observe(self, kind: str, pod: dict[str, Any]) -> None:
        now = time.time()
        meta = pod["metadata"]
        with self._lock:
            h = self.history.get(meta["name"])
            if h is None:
                h = self.history[meta["name"]] = PodHistory(meta["name"], now)
            if h.ready_at is None and is_ready(pod):
                h.ready_at = now
            if meta.get("deletionTimestamp") and h.deleting_seen is None:
                h.deleting_seen = now
                h.grace_period = int(meta.get("deletionGracePeriodSeconds", 0))
                h.deletion_requested = parse_time(meta["deletionTimestamp"]) - h.grace_period
            worker = container_status(pod, WORKER_CONTAINER)
            if worker is not None:
                restarts = int(worker.get("restartCount", 0))
                if restarts > h.worker_restarts:
                    h.restart_seen.append(now)
                    h.worker_restarts = restarts
                ready = bool(worker.get("ready"))
                if ready and not h._worker_ready and h.restart_seen and len(h.ready_again) < len(h.restart_seen):
                    h.ready_again.append(now)
                h._worker_ready = ready
                for state in (worker.get("state") or {}, worker.get("lastState") or {}):
                    terminated = state.get("terminated")
                    if terminated and terminated.get("finishedAt"):
                        h.worker_finished = parse_time(terminated["finishedAt"])
                        h.worker_exit_code = terminated.get("exitCode")
            if kind == "DELETED" and h.gone_at is None:
                h.gone_at = now


# ---------------------------------------------------------------------------------------- kubectl, helm


def kubectl(kubeconfig: Path, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise NodeTestError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return proc


def exec_python(kubeconfig: Path, namespace: str, pod: str, code: str, container: str = WORKER_CONTAINER) -> Any:
    """Run CODE with the container's python (the worker image has no shell) and return the JSON it prints."""
    proc = kubectl(kubeconfig, "exec", "-n", namespace, pod, "-c", container, "--", "python", "-c", code)
    return json.loads(proc.stdout)


class NodeHelm:
    """bin/helm (Helm 4) against the node, with its own Helm home (no user configuration or cache)."""

    def __init__(self, kubeconfig: Path, home: Path, binary: str = "helm") -> None:
        self.binary = BIN / binary
        self.kubeconfig = kubeconfig
        self.env = isolated_helm_env(home)

    def __call__(self, args: Sequence[str], values: dict[str, Any] | None = None, timeout: float = 300) -> HelmRun:
        cmd = [str(self.binary), *args, "--kubeconfig", str(self.kubeconfig)]
        if values is not None:
            cmd += ["--values", "-"]
        proc = subprocess.run(
            cmd, input=json.dumps(values) if values is not None else None, capture_output=True, text=True,
            env=self.env, timeout=timeout, check=False,
        )  # fmt: skip
        run = HelmRun(cmd, proc.returncode, proc.stdout, proc.stderr)
        if run.returncode != 0:
            raise NodeTestError(f"helm failed:\n{run.output}")
        return run

    def install(self, release: str, namespace: str, values: dict[str, Any]) -> HelmRun:
        return self(["install", release, str(CHART), "--namespace", namespace], values)

    def upgrade(self, release: str, namespace: str, values: dict[str, Any]) -> HelmRun:
        return self(["upgrade", release, str(CHART), "--namespace", namespace], values)

    def template(self, release: str, namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        run = self(["template", release, str(CHART), "--namespace", namespace], values)
        return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


# ---------------------------------------------------------------------------------------- metrics


def dns_lookup(server: str, name: str) -> list[str]:
    """The A records of NAME from the DNS server SERVER (the node's CoreDNS)."""
    rcode, addresses = dns_query(server, name)
    if rcode != 0:
        raise NodeTestError(f"DNS {name} at {server}: rcode {rcode}")
    return sorted(addresses)


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of metric NAME in a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group("name") == name:
            labels = {lm.group("key"): lm.group("value") for lm in _LABEL.finditer(m.group("labels") or "")}
            out.append((labels, float(m.group("value"))))
    return out


def processed_pings(text: str) -> float:
    """dramatiq_messages_processed_total of the ping actor, outcome success, summed."""
    return sum(
        value
        for labels, value in samples(text, "dramatiq_messages_processed_total")
        if labels.get("actor") == "ping" and labels.get("outcome") == "success"
    )


@dataclass(frozen=True)
class ScrapedWorker:
    address: str
    port: int
    text: str


def worker_metrics(api: KubeApi, dns_server: str, namespace: str, release: str) -> list[ScrapedWorker]:
    """`/metrics` of every worker behind the chart's metrics Service, found by the Service's DNS name."""
    service = f"{fullname(release)}-metrics"
    body = api.get(f"/api/v1/namespaces/{namespace}/services/{service}")
    if body is None:
        raise NodeTestError(f"the chart rendered no Service {service} in {namespace}")
    port = next(p["port"] for p in body["spec"]["ports"] if p["name"] == "metrics")
    addresses = dns_lookup(dns_server, f"{service}.{namespace}.svc.cluster.local")
    if not addresses:
        raise NodeTestError(f"{service}.{namespace}.svc.cluster.local has no address (no endpoints)")
    out = []
    for address in addresses:
        response = requests.get(f"http://{address}:{port}/metrics", timeout=10)
        response.raise_for_status()
        out.append(ScrapedWorker(address, port, response.text))
    return out


# ---------------------------------------------------------------------------------------- jobs


class PingStream:
    """Sends `total` pings in batches of `batch` every `interval` seconds from a thread (bounded: it stops
    after the last batch); `sent` lists the nonces enqueued so far, `finished_at` when the last went out."""

    def __init__(
        self, server: AofRedis, total: int, *, batch: int = 50, interval: float = 0.5, prefix: str = "s",
        hold_seconds: float = 0.0,
    ) -> None:  # fmt: skip
        self.server = server
        self.total = total
        self.batch = batch
        self.interval = interval
        self.prefix = prefix
        self.hold_seconds = hold_seconds
        self.sent: list[str] = []
        self.started_at = 0.0
        self.finished_at: float | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ping-stream", daemon=True)

    def start(self) -> PingStream:
        self.started_at = time.time()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            index = 0
            while index < self.total:
                count = min(self.batch, self.total - index)
                nonces = send_pings(self.server, count, hold_seconds=self.hold_seconds, prefix=f"{self.prefix}{index}-")
                self.sent.extend(nonces)
                index += count
                time.sleep(self.interval)
            self.finished_at = time.time()
        except BaseException as e:  # reported by join()
            self.error = e

    def join(self, timeout: float) -> list[str]:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise NodeTestError(f"the ping stream did not finish within {timeout:.0f}s ({len(self.sent)} sent)")
        if self.error is not None:
            raise NodeTestError(f"the ping stream failed after {len(self.sent)} pings: {self.error!r}")
        return self.sent


def probe_times(server: AofRedis, nonces: Sequence[str]) -> dict[str, float]:
    """When each ping ran (`processed_at` of the value the ping wrote), for the nonces that ran."""
    client = server.client()
    out = {}
    keys = [f"wp-k8s-service:probe:{n}" for n in nonces]
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for nonce, raw in zip(nonces[start : start + 500], client.mget(chunk), strict=True):
            if raw is not None:
                out[nonce] = float(json.loads(raw)["processed_at"])
    return out


def longest_gap(times: dict[str, float], since: float, until: float) -> tuple[float, float]:
    """The longest stretch between SINCE and UNTIL in which no job ran: (its start, its length), the
    pause in processing a disruption caused; its end is when jobs resumed."""
    points = sorted([since, *(t for t in times.values() if since <= t <= until), until])
    return max(((a, b - a) for a, b in itertools.pairwise(points)), key=lambda gap: gap[1], default=(since, 0.0))


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise NodeTestError(f"{what}: not reached within {timeout:.0f}s")


# ---------------------------------------------------------------------------------------- images


def docker_image_id(reference: str) -> str | None:
    """The local Docker engine's image ID (its config digest) of REFERENCE; None without the image or engine."""
    try:
        proc = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", reference],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def node_image_config(node: Node, reference: str) -> str | None:
    """The config digest (what Docker calls the image ID) of REFERENCE in the node's containerd; None when
    it is not there. Follows an OCI index to its first manifest (`docker save` writes either)."""
    wanted = normalized(reference)
    digest = next(
        (line.split()[2] for line in node.ctr("images", "ls").splitlines()[1:] if line.split()[:1] == [wanted]), None
    )
    for _ in range(3):
        if digest is None:
            return None
        content = json.loads(node.ctr("content", "get", digest))
        if "config" in content:
            config: str = content["config"]["digest"]
            return config
        digest = (content.get("manifests") or [{}])[0].get("digest")
    return None


def images_to_import(node: Node, references: Sequence[str]) -> dict[str, str]:
    """The REFERENCES the node's containerd lacks, or holds in another build than the local Docker engine's
    (a rebuilt image keeps its tag): reference -> why."""
    out = {}
    for reference in references:
        have = node_image_config(node, reference)
        built = docker_image_id(reference)
        if have is None:
            out[reference] = "missing"
        elif built is not None and built != have:
            out[reference] = f"stale ({have[:19]}, built {built[:19]})"
    return out


# ---------------------------------------------------------------------------------------- releases


@dataclass(frozen=True)
class NodeEnv:
    """The node with its images imported, an API client and helm."""

    node: Node
    kube: KubeApi
    helm: NodeHelm


@dataclass
class Installed:
    """One release of the chart on the node."""

    release: str
    namespace: str
    mode: str
    values: dict[str, Any]
    pods: list[dict[str, Any]]
    seconds: float
    redis: AofRedis


#: `deploy(mode, release="wp", **values)`: Deployer.install of a test's fixture.
Deploy = Callable[..., Installed]


class Deployer:
    """Installs the chart into new namespaces that enforce the `restricted` Pod Security Standard, pointed
    at REDIS (its password in the Secret the values name), and deletes those namespaces in `cleanup()`."""

    def __init__(self, env: NodeEnv, redis: AofRedis, label: str) -> None:
        self.node = env.node
        self.kube = env.kube
        self.helm = env.helm
        self.redis = redis
        self.label = label
        self.slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40].strip("-")
        self.namespaces: list[str] = []

    def install(self, mode: str, release: str = "wp", **extra: Any) -> Installed:
        namespace = f"{self.slug}-{secrets.token_hex(3)}"
        self.kube.create_namespace(namespace, RESTRICTED)
        self.namespaces.append(namespace)
        LIVE_NAMESPACES.append(namespace)
        assert self.redis.password is not None
        self.kube.create_secret(namespace, REDIS_SECRET, {REDIS_SECRET_KEY: self.redis.password})
        values = release_values(mode, self.node.node_ip, self.redis.port, **extra)
        mark = time.monotonic()
        self.helm.install(release, namespace, values)
        try:
            pods = wait_deployments_ready(self.kube, namespace, timeout=240)
        except NodeTestError as e:
            raise NodeTestError(f"{mode}: the release did not become ready: {e}") from e
        seconds = time.monotonic() - mark
        note(f"{self.label}: {mode} release Ready in {seconds:.1f}s after helm install ({len(pods)} pods)")
        return Installed(release, namespace, mode, values, pods, seconds, self.redis)

    def cleanup(self) -> None:
        for namespace in self.namespaces:
            self.kube.delete_namespace(namespace)
            LIVE_NAMESPACES.remove(namespace)


# ---------------------------------------------------------------------------------------- reports

#: Where the node tests write what they measured, one JSON line each (printed in the terminal summary).
REPORT = REPO / ".state" / "node-tests" / "report.jsonl"
#: The namespaces of the releases that exist now: described in the report of a failing test.
LIVE_NAMESPACES: list[str] = []


def note(line: str) -> None:
    """A line for the terminal summary of the node tests."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as out:
        out.write(json.dumps({"summary": line}) + "\n")


def namespace_report(kubeconfig: Path, namespace: str) -> Iterator[tuple[str, str]]:
    """`kubectl describe` of the namespace's workloads and pods, and the logs of every container."""
    yield (
        f"kubectl describe deployments,replicasets,pods -n {namespace}",
        kubectl(kubeconfig, "describe", "deployments,replicasets,pods", "-n", namespace, check=False).stdout[-20000:],
    )
    yield (
        f"kubectl get events -n {namespace}",
        kubectl(kubeconfig, "get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout[-8000:],
    )
    names = kubectl(kubeconfig, "get", "pods", "-n", namespace, "-o", "name", check=False).stdout.split()
    for pod in names:
        proc = kubectl(
            kubeconfig, "logs", "-n", namespace, pod, "--all-containers", "--prefix", "--tail=80", check=False
        )
        yield (f"logs of {pod}", (proc.stdout + proc.stderr)[-8000:])
