"""NetworkPolicies: one per workload (API, worker, embedded Redis, test pod), ingress only from where
it is expected, egress only to DNS, Redis, the collector and what the values add."""

from __future__ import annotations

from typing import Any

import pytest

from wp_devsupport.chart import FULLNAME, RELEASE, find_all, render_chart, render_scenario, with_values


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

    def test_egress_to_dns_redis_collector_and_its_own_extra_only(
        self, deployment_mode: dict[str, dict[str, Any]]
    ) -> None:
        """In deployment mode the API pods do not run clone jobs: no web egress, and the API's database
        rule (`apiExtraEgress`) stays off the worker."""
        api, worker = deployment_mode[FULLNAME], deployment_mode[f"{FULLNAME}-worker"]
        egress_ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in api["egress"]]
        assert egress_ports == [[(53, "TCP"), (53, "UDP")], [(6379, "TCP")], [(4318, "TCP")], [(5432, "TCP")]]
        assert api["egress"][:3] == worker["egress"][:3], "DNS, Redis and the collector alike"

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

    @pytest.mark.parametrize("mode", ["sidecar", "deployment"])
    def test_extra_egress_per_workload(self, mode: str) -> None:
        def rule(port: int) -> dict[str, Any]:
            return {"ports": [{"port": port, "protocol": "TCP"}]}

        values = with_values(
            {
                "worker": {"mode": mode},
                "networkPolicy": {
                    "enabled": True,
                    "extraEgress": [rule(50001)],
                    "apiExtraEgress": [rule(50002)],
                    "workerExtraEgress": [rule(50003)],
                },
            }
        )
        policies = _policies(render_chart(values))

        def extra_ports(name: str) -> list[int]:
            return [r["ports"][0]["port"] for r in policies[name]["egress"] if r["ports"][0]["port"] > 50000]

        if mode == "sidecar":
            # The worker runs in the API pods: they need both workloads' egress.
            assert extra_ports(FULLNAME) == [50001, 50003, 50002]
            assert f"{FULLNAME}-worker" not in policies
        else:
            assert extra_ports(FULLNAME) == [50001, 50002]
            assert extra_ports(f"{FULLNAME}-worker") == [50001, 50003]


class TestWorkerPolicy:
    def test_ingress_from_monitoring_on_metrics(self, deployment_mode: dict[str, dict[str, Any]]) -> None:
        worker = deployment_mode[f"{FULLNAME}-worker"]
        assert worker["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
        assert worker["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "monitoring"
        }

    def test_egress_to_dns_redis_collector_and_clone_targets(self, deployment_mode: dict[str, dict[str, Any]]) -> None:
        worker = deployment_mode[f"{FULLNAME}-worker"]
        egress_ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in worker["egress"]]
        assert egress_ports == [
            [(53, "TCP"), (53, "UDP")],
            [(6379, "TCP")],
            [(4318, "TCP")],
            [(80, "TCP"), (443, "TCP")],
        ]
        assert worker["egress"][1]["to"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "redis"
        }
        assert worker["egress"][2]["to"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "observability"
        }


class TestDnsPeer:
    def test_configurable_peers(self, deployment_mode: dict[str, dict[str, Any]]) -> None:
        """The scenario adds NodeLocal DNSCache's link-local address next to CoreDNS."""
        dns = deployment_mode[f"{FULLNAME}-worker"]["egress"][0]
        assert dns["to"][1] == {"ipBlock": {"cidr": "169.254.20.10/32"}}
        assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}

    @pytest.mark.parametrize(
        ("dns", "ports"),
        [
            ({}, [53]),
            ({"dnsPorts": [53, 5353]}, [53, 5353]),
            ({"dnsPorts": [5353], "dnsEgressTo": []}, [5353]),
        ],
    )
    def test_ports_and_peers(self, dns: dict[str, Any], ports: list[int]) -> None:
        objects = render_chart(with_values({"networkPolicy": {"enabled": True, **dns}}))
        for policy in _policies(objects).values():
            if "egress" not in policy or not policy["egress"]:
                continue
            rule = policy["egress"][0]
            assert rule["ports"] == [{"port": p, "protocol": proto} for p in ports for proto in ("UDP", "TCP")]
            if dns.get("dnsEgressTo") == []:
                assert "to" not in rule, "an empty peer list allows any destination on the DNS ports"
            else:
                assert rule["to"][0]["namespaceSelector"]["matchLabels"] == {
                    "kubernetes.io/metadata.name": "kube-system"
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
