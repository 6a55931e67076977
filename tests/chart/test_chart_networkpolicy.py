"""NetworkPolicies: one per workload (API, worker, embedded Redis, test pod), ingress only from where
it is expected, egress only to DNS, Redis, the collector and what the values add."""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import FULLNAME, RELEASE, find_all, render_chart, render_scenario


def _policies(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p["spec"] for p in find_all(objects, "NetworkPolicy")}


@pytest.fixture(scope="module")
def deployment_mode() -> dict[str, dict[str, Any]]:
    """The networkpolicy scenario: worker Deployment, restricted API ingress, Redis in a known namespace."""
    return _policies(render_scenario("networkpolicy"))


@pytest.fixture(scope="module")
def sidecar_mode() -> dict[str, dict[str, Any]]:
    """Sidecar mode with the embedded Redis."""
    return _policies(
        render_chart(
            {
                "embeddedRedis": {"enabled": True},
                "networkPolicy": {"enabled": True},
                "otel": {"endpoint": "https://collector.example"},
            }
        )
    )


class TestPolicies:
    def test_one_per_workload(self, deployment_mode: dict[str, dict[str, Any]]) -> None:
        assert sorted(deployment_mode) == [FULLNAME, f"{FULLNAME}-test", f"{FULLNAME}-worker"]

    def test_ingress_and_egress_are_both_restricted(self, deployment_mode: dict[str, dict[str, Any]]) -> None:
        assert all(p["policyTypes"] == ["Ingress", "Egress"] for p in deployment_mode.values())


class TestApiPolicy:
    def test_ingress_from_the_ingress_controller_on_http(self, deployment_mode: dict[str, dict[str, Any]]) -> None:
        api = deployment_mode[FULLNAME]
        assert api["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
        assert [r["ports"] for r in api["ingress"]] == [[{"port": "http", "protocol": "TCP"}]]
        assert api["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "ingress-nginx"
        }

    def test_egress_like_the_worker(self, deployment_mode: dict[str, dict[str, Any]]) -> None:
        assert deployment_mode[FULLNAME]["egress"] == deployment_mode[f"{FULLNAME}-worker"]["egress"]

    def test_sidecar_mode_adds_the_metrics_ingress(self, sidecar_mode: dict[str, dict[str, Any]]) -> None:
        api = sidecar_mode[FULLNAME]
        assert [r["ports"][0]["port"] for r in api["ingress"]] == ["http", "metrics"]

    def test_sidecar_mode_egress_to_the_embedded_redis_and_collector(
        self, sidecar_mode: dict[str, dict[str, Any]]
    ) -> None:
        api = sidecar_mode[FULLNAME]
        redis_rule = api["egress"][1]
        assert redis_rule["to"] == [
            {
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/component": "redis",
                        "app.kubernetes.io/instance": RELEASE,
                        "app.kubernetes.io/name": "wp-k8s-service",
                    }
                }
            }
        ]
        assert api["egress"][2] == {"ports": [{"port": 443, "protocol": "TCP"}]}


class TestWorkerPolicy:
    def test_ingress_from_monitoring_on_metrics(self, deployment_mode: dict[str, dict[str, Any]]) -> None:
        worker = deployment_mode[f"{FULLNAME}-worker"]
        assert worker["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
        assert worker["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "monitoring"
        }

    def test_egress_to_dns_redis_collector_and_extra(self, deployment_mode: dict[str, dict[str, Any]]) -> None:
        worker = deployment_mode[f"{FULLNAME}-worker"]
        egress_ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in worker["egress"]]
        assert egress_ports == [[(53, "TCP"), (53, "UDP")], [(6379, "TCP")], [(4318, "TCP")], [(5432, "TCP")]]
        assert worker["egress"][1]["to"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "redis"
        }
        assert worker["egress"][2]["to"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "observability"
        }


class TestTestPodPolicy:
    def test_egress_to_dns_and_redis_only(self, deployment_mode: dict[str, dict[str, Any]]) -> None:
        test = deployment_mode[f"{FULLNAME}-test"]
        assert test["egress"] == deployment_mode[f"{FULLNAME}-worker"]["egress"][:2]
        assert "ingress" not in test


class TestEmbeddedRedisPolicy:
    def test_ingress_from_the_release_only_and_no_egress(self, sidecar_mode: dict[str, dict[str, Any]]) -> None:
        redis = sidecar_mode[f"{FULLNAME}-redis"]
        assert redis["egress"] == []
        assert redis["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/name": "wp-k8s-service",
        }
