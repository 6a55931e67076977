"""The chart's ServiceMonitor selects the workers' metrics: a real Prometheus (bin/prometheus, on the host)
scrapes every worker through it.

This is Prometheus' own Kubernetes service discovery (`kubernetes_sd_configs`, role `endpointslice`,
against the node's API server), configured the way the prometheus-operator translates a ServiceMonitor
(wp_devsupport.cluster.servicemonitor_sd) - not the operator itself. The configuration is built from the
ServiceMonitor `helm template` renders with the release's values plus chart/ci/servicemonitor-values.yaml
(jobLabel, a relabeling, honorLabels), never by hand: a selector that misses the metrics Service, a
wrong port name or path in the chart leaves Prometheus without targets and fails the test.
"""

from __future__ import annotations

import copy
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from wp_devsupport.chart import SCENARIOS
from wp_devsupport.cluster.node import NODE_NAME
from wp_devsupport.cluster.node_jobs import (
    REPORT,
    Deploy,
    NodeEnv,
    NodeHelm,
    deep_merge,
    fullname,
    note,
    release_values,
    worker_pods,
)
from wp_devsupport.cluster.servicemonitor_sd import PrometheusSd, dump, scrape_configs
from wp_devsupport.faults import AofRedis, send_pings, tally, wait_drained
from wp_devsupport.repo import BIN

PINGS = 30
NAMESPACE = "wp-sm"


def broken_copies(monitor: dict[str, Any]) -> list[dict[str, Any]]:
    """The ServiceMonitor with a wrong port name, and with a selector that misses the metrics Service:
    scraped next to the real one, each must find nothing (so the test can tell a broken chart)."""
    wrong_port = copy.deepcopy(monitor)
    wrong_port["metadata"]["name"] += "-wrong-port"
    wrong_port["spec"]["endpoints"][0]["port"] = "http-metrics"
    wrong_selector = copy.deepcopy(monitor)
    wrong_selector["metadata"]["name"] += "-wrong-selector"
    wrong_selector["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] = "another-release"
    return [wrong_port, wrong_selector]


class TestTranslation:
    """The generated configuration without the node: promtool accepts it and it carries the chart's
    selector, port and path (the live tests below prove Prometheus finds the workers with it)."""

    def test_promtool_accepts_the_scrape_config_of_the_rendered_servicemonitor(self, tmp_path: Path) -> None:
        values = deep_merge(release_values("deployment", "10.0.0.1", 6379), monitor_values())
        rendered = NodeHelm(tmp_path / "kubeconfig-unused", tmp_path / "helm").template("wp", NAMESPACE, values)
        (monitor,) = [doc for doc in rendered if doc["kind"] == "ServiceMonitor"]
        tls = {"ca_file": "/ca.crt", "cert_file": "/c.crt", "key_file": "/c.key"}
        configs = scrape_configs(monitor, tls, "https://10.0.0.1:6443")
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({"scrape_configs": configs}))
        proc = subprocess.run(
            [str(BIN / "promtool"), "check", "config", "--syntax-only", str(config)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, (
            f"promtool rejects the generated config:\n{proc.stdout}{proc.stderr}\n{dump(configs)}"
        )
        (job,) = configs
        assert job["job_name"] == f"serviceMonitor/monitoring/{monitor['metadata']['name']}/0"
        assert job["kubernetes_sd_configs"][0]["namespaces"] == {"names": [NAMESPACE]}
        keeps = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert len(keeps) == len(selector) + 2, keeps  # every label, the port name, the single shard
        port_keep = {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_endpointslice_port_name"],
            "regex": "metrics",
        }
        assert port_keep in keeps
        assert job["metrics_path"] == "/metrics"


def monitor_values() -> dict[str, Any]:
    """The CI ServiceMonitor scenario's `serviceMonitor` values, scraping every 2 s, rendered without the CRD."""
    scenario = yaml.safe_load(SCENARIOS["servicemonitor"].read_text())["serviceMonitor"]
    return {
        "serviceMonitor": {**scenario, "enabled": True, "skipApiCheck": True, "interval": "2s", "scrapeTimeout": "2s"}
    }


@pytest.mark.parametrize("mode", ["sidecar", "deployment"])
class TestServiceMonitor:
    def test_prometheus_scrapes_every_worker_through_the_rendered_servicemonitor(
        self, mode: str, env: NodeEnv, deploy: Deploy, host_redis: AofRedis, tmp_path: Path
    ) -> None:
        release = deploy(mode)
        rendered = env.helm.template(release.release, release.namespace, deep_merge(release.values, monitor_values()))
        monitors = [doc for doc in rendered if doc["kind"] == "ServiceMonitor"]
        assert len(monitors) == 1, f"helm template rendered {len(monitors)} ServiceMonitors"
        (monitor,) = monitors
        tls = {"ca_file": env.kube.ca_file, "cert_file": env.kube.cert[0], "key_file": env.kube.cert[1]}
        configs = scrape_configs(monitor, tls, env.kube.server)
        broken = [c for m in broken_copies(monitor) for c in scrape_configs(m, tls, env.kube.server)]
        started = time.monotonic()
        nonces = send_pings(host_redis, PINGS, prefix=f"sm-{mode}-")
        wait_drained(host_redis, timeout=60)
        tally(f"ServiceMonitor ({mode})", host_redis, nonces, started, report=REPORT)

        prometheus = PrometheusSd(tmp_path / "prometheus", configs + broken)
        try:
            pods = {p["metadata"]["name"]: p for p in worker_pods(env.kube, release.namespace)}
            job_name = configs[0]["job_name"]
            deadline = time.monotonic() + 60
            active: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                targets = prometheus.targets()
                active = [t for t in targets["activeTargets"] if t["scrapePool"] == job_name]
                if len(active) == len(pods) and all(t["health"] == "up" for t in active):
                    break
                time.sleep(1)
            else:
                pytest.fail(
                    f"Prometheus did not scrape the {len(pods)} worker(s) through {job_name} within 60s: "
                    f"active {[(t['labels'], t['health'], t.get('lastError')) for t in active]}\n"
                    f"config:\n{dump(configs)}\nlog:\n{prometheus.log()[-3000:]}"
                )
            service = f"{fullname(release.release)}-metrics"
            service_labels = (env.kube.get(f"/api/v1/namespaces/{release.namespace}/services/{service}") or {})[
                "metadata"
            ]["labels"]
            job = service_labels[monitor["spec"]["jobLabel"]]
            for target in active:
                labels = target["labels"]
                assert labels["namespace"] == release.namespace, labels
                assert labels["service"] == service, labels
                assert labels["pod"] in pods, f"target pod {labels['pod']} is not a worker pod {list(pods)}"
                assert labels["container"] == "worker", labels
                assert labels["endpoint"] == "metrics", labels
                assert labels["job"] == job, f"job should come from the Service's label {monitor['spec']['jobLabel']}"
                assert labels["node"] == NODE_NAME, (
                    f"the chart's relabeling (pod node name -> node) did not apply: {labels}"
                )
                assert target["scrapeUrl"].endswith(f":{release.values['worker'].get('metricsPort', 9191)}/metrics")
            # The selector discriminates: the API Service's endpoints were discovered and dropped.
            dropped = {
                t["discoveredLabels"].get("__meta_kubernetes_service_name")
                for t in prometheus.targets()["droppedTargets"]
                if t.get("scrapePool", job_name) == job_name
            }
            assert fullname(release.release) in dropped, f"the API Service was not discovered and dropped: {dropped}"
            ups = prometheus.query(f'up{{job="{job}",namespace="{release.namespace}"}}')
            assert sorted(float(r["value"][1]) for r in ups) == [1.0] * len(pods), ups
            deadline = time.monotonic() + 30
            counted = 0.0
            while time.monotonic() < deadline:
                result = prometheus.query(
                    f'sum(dramatiq_messages_processed_total{{namespace="{release.namespace}",actor="ping",outcome="success"}})'
                )
                counted = float(result[0]["value"][1]) if result else 0.0
                if counted >= PINGS:
                    break
                time.sleep(1)
            assert counted == PINGS, f"Prometheus has {counted} successful pings, the workers processed {PINGS}"
            # The broken copies discovered the same endpoints (counted as dropped) and kept none of them.
            final: dict[str, Any] = prometheus.targets()
            for config in broken:
                pool = config["job_name"]
                found = [t["labels"] for t in final["activeTargets"] if t["scrapePool"] == pool]
                assert not found, f"{pool} (a broken copy of the ServiceMonitor) found targets: {found}"
                assert final["droppedTargetCounts"].get(pool, 0) > 0, (
                    f"{pool} discovered nothing: {final['droppedTargetCounts']}"
                )
            note(
                f"ServiceMonitor ({mode}): Prometheus SD found {len(active)} target(s) {sorted(t['labels']['pod'] for t in active)}, "
                f"up 1, dramatiq_messages_processed_total {counted:.0f} of {PINGS}; dropped services {sorted(d for d in dropped if d)}"
            )
        finally:
            prometheus.stop()
