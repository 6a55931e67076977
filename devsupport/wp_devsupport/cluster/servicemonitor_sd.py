"""A ServiceMonitor translated into a Prometheus scrape configuration, as the prometheus-operator does it.

This is not the operator: it is Prometheus' own Kubernetes service discovery (`kubernetes_sd_configs`,
role `endpointslice`), configured the way the operator's config generator
(pkg/prometheus/promcfg.go, `generateServiceMonitorConfig`) translates a ServiceMonitor endpoint: one
job `serviceMonitor/<namespace>/<name>/<index>` per endpoint, the namespaces of `namespaceSelector`, a
`keep` on the Service's labels for every `selector.matchLabels` entry (and `matchExpressions`), a `keep`
on the endpoint port's name, the `namespace`/`service`/`pod`/`container`/`node`/`endpoint` target labels,
`job` from the Service name or from `jobLabel`, then the endpoint's own `relabelings`, and its
`metricRelabelings` as `metric_relabel_configs`. The input is the ServiceMonitor the chart renders, so a
wrong selector, port name or path in the chart makes Prometheus find nothing.

`PrometheusSd` runs bin/prometheus on loopback with such a configuration.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from ..ports import free_port
from ..processes import ManagedProcess
from ..repo import BIN

ROLE = "endpointslice"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(label: str) -> str:
    """A Kubernetes label name as Prometheus' discovery exposes it (`app.kubernetes.io/name` ->
    `app_kubernetes_io_name`)."""
    return _INVALID.sub("_", label)


def _relabel(config: dict[str, Any]) -> dict[str, Any]:
    """An operator `RelabelConfig` (camelCase) as a Prometheus `relabel_config` (snake_case)."""
    names = {
        "sourceLabels": "source_labels",
        "targetLabel": "target_label",
        "separator": "separator",
        "regex": "regex",
        "modulus": "modulus",
        "replacement": "replacement",
        "action": "action",
    }
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key not in names:
            raise ValueError(f"unknown RelabelConfig field {key!r}")
        out[names[key]] = value.lower() if key == "action" else value
    return out


def _selector_relabelings(selector: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in sorted(selector.get("matchLabels") or {}):
        name = sanitize(key)
        out.append(
            {
                "action": "keep",
                "source_labels": [
                    f"__meta_kubernetes_service_label_{name}",
                    f"__meta_kubernetes_service_labelpresent_{name}",
                ],
                "regex": f"({selector['matchLabels'][key]});true",
            }
        )
    for expression in selector.get("matchExpressions") or []:
        name = sanitize(expression["key"])
        operator = expression["operator"]
        values = "|".join(expression.get("values") or [])
        if operator in ("In", "NotIn"):
            out.append(
                {
                    "action": "keep" if operator == "In" else "drop",
                    "source_labels": [
                        f"__meta_kubernetes_service_label_{name}",
                        f"__meta_kubernetes_service_labelpresent_{name}",
                    ],
                    "regex": f"({values});true",
                }
            )
        elif operator in ("Exists", "DoesNotExist"):
            out.append(
                {
                    "action": "keep" if operator == "Exists" else "drop",
                    "source_labels": [f"__meta_kubernetes_service_labelpresent_{name}"],
                    "regex": "true",
                }
            )
        else:
            raise ValueError(f"unknown selector operator {operator!r}")
    return out


def scrape_configs(monitor: dict[str, Any], tls: dict[str, str], api_server: str) -> list[dict[str, Any]]:
    """The scrape configurations the operator would generate for MONITOR (a ServiceMonitor object),
    discovering through API_SERVER with the client certificate and CA of TLS (Prometheus `tls_config`)."""
    meta = monitor["metadata"]
    spec = monitor["spec"]
    selector = spec.get("namespaceSelector") or {}
    sd: dict[str, Any] = {"role": ROLE, "api_server": api_server, "tls_config": tls}
    if not selector.get("any"):
        sd["namespaces"] = {"names": selector.get("matchNames") or [meta["namespace"]]}
    configs = []
    for index, endpoint in enumerate(spec["endpoints"]):
        relabelings: list[dict[str, Any]] = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
        relabelings += _selector_relabelings(spec.get("selector") or {})
        if endpoint.get("port"):
            relabelings.append(
                {"action": "keep", "source_labels": [f"__meta_kubernetes_{ROLE}_port_name"], "regex": endpoint["port"]}
            )
        elif endpoint.get("targetPort") is not None:
            target_port = endpoint["targetPort"]
            by = "name" if isinstance(target_port, str) else "number"
            relabelings.append(
                {
                    "action": "keep",
                    "source_labels": [f"__meta_kubernetes_pod_container_port_{by}"],
                    "regex": str(target_port),
                }
            )
        kind_name = [f"__meta_kubernetes_{ROLE}_address_target_kind", f"__meta_kubernetes_{ROLE}_address_target_name"]
        relabelings += [
            {"source_labels": kind_name, "separator": ";", "regex": "Node;(.*)", "replacement": "${1}", "target_label": "node"},
            {"source_labels": kind_name, "separator": ";", "regex": "Pod;(.*)", "replacement": "${1}", "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
        ]  # fmt: skip
        for label in spec.get("targetLabels") or []:
            relabelings.append(
                {"source_labels": [f"__meta_kubernetes_service_label_{sanitize(label)}"], "target_label": sanitize(label), "regex": "(.+)", "replacement": "${1}"}
            )  # fmt: skip
        for label in spec.get("podTargetLabels") or []:
            relabelings.append(
                {"source_labels": [f"__meta_kubernetes_pod_label_{sanitize(label)}"], "target_label": sanitize(label), "regex": "(.+)", "replacement": "${1}"}
            )  # fmt: skip
        relabelings.append(
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"}
        )
        if spec.get("jobLabel"):
            relabelings.append(
                {"source_labels": [f"__meta_kubernetes_service_label_{sanitize(spec['jobLabel'])}"], "target_label": "job", "regex": "(.+)", "replacement": "${1}"}
            )  # fmt: skip
        if endpoint.get("port") or endpoint.get("targetPort") is not None:
            relabelings.append(
                {"target_label": "endpoint", "replacement": str(endpoint.get("port") or endpoint["targetPort"])}
            )
        relabelings += [_relabel(r) for r in endpoint.get("relabelings") or []]
        # One shard: what the operator appends for sharding keeps every target.
        relabelings += [
            {"source_labels": ["__address__"], "target_label": "__tmp_hash", "modulus": 1, "action": "hashmod"},
            {"source_labels": ["__tmp_hash"], "regex": "0", "action": "keep"},
        ]
        config: dict[str, Any] = {
            "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}",
            "honor_labels": bool(endpoint.get("honorLabels", False)),
            "kubernetes_sd_configs": [sd],
            "metrics_path": endpoint.get("path", "/metrics"),
            "scheme": endpoint.get("scheme", "http"),
            "relabel_configs": relabelings,
        }
        if endpoint.get("interval"):
            config["scrape_interval"] = endpoint["interval"]
        if endpoint.get("scrapeTimeout"):
            config["scrape_timeout"] = endpoint["scrapeTimeout"]
        if endpoint.get("metricRelabelings"):
            config["metric_relabel_configs"] = [_relabel(r) for r in endpoint["metricRelabelings"]]
        configs.append(config)
    return configs


class PrometheusSd:
    """bin/prometheus on loopback with the given scrape configurations (stopped by `stop()`)."""

    def __init__(self, workdir: Path, configs: list[dict[str, Any]]) -> None:
        binary = BIN / "prometheus"
        if not binary.exists():
            raise FileNotFoundError("bin/prometheus is missing: run `ci/tools.sh prometheus`")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config_file = workdir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump({"global": {"scrape_interval": "5s"}, "scrape_configs": configs}))
        command = [
            str(binary),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.process = ManagedProcess("prometheus", command, workdir / "prometheus.log")
        deadline = time.monotonic() + 60
        while not self._ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready after 60s:\n{self.process.output()[-3000:]}")
            time.sleep(0.3)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if not self.process.running():
            raise RuntimeError(f"prometheus exited:\n{self.process.output()[-3000:]}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def targets(self) -> dict[str, Any]:
        """/api/v1/targets: `activeTargets`, `droppedTargets` and `droppedTargetCounts` (by scrape pool)."""
        data: dict[str, Any] = requests.get(f"{self.url}/api/v1/targets", timeout=10).json()["data"]
        return data

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body.get('error', body)}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def log(self) -> str:
        return self.process.output()

    def stop(self) -> None:
        self.process.stop(timeout=20)


def dump(configs: list[dict[str, Any]]) -> str:
    return json.dumps(configs, indent=2)
