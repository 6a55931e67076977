"""The WordPress clone's settings: allowed hosts and networks, the credentials Secret, the result TTL,
and the web egress a NetworkPolicy opens for them."""

from __future__ import annotations

from typing import Any

import pytest

from wp_devsupport.chart import FULLNAME, api_pod, container, env_values, find, render_chart, with_values


@pytest.fixture(scope="module")
def with_clone_targets() -> list[dict[str, Any]]:
    return render_chart(
        with_values(
            {
                "worker": {
                    "clone": {
                        "allowedHosts": ["blog.example.com", "*.example.org"],
                        "allowedNetworks": ["10.0.0.0/8"],
                        "credentialsSecret": "wordpress-clone-credentials",
                    },
                    "resultTtl": 3600,
                },
                "networkPolicy": {"enabled": True},
            }
        )
    )


@pytest.fixture(scope="module")
def without_clone_targets() -> list[dict[str, Any]]:
    return render_chart(with_values({"networkPolicy": {"enabled": True}}))


def _web_egress(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    policy = find(objects, "NetworkPolicy", FULLNAME)["spec"]
    return [rule for rule in policy["egress"] if {"port": 443, "protocol": "TCP"} in rule.get("ports", [])]


class TestCloneSettings:
    def test_reach_the_worker(self, with_clone_targets: list[dict[str, Any]]) -> None:
        env = env_values(container(api_pod(with_clone_targets), "worker"))
        assert env["CLONE_ALLOWED_HOSTS"] == "blog.example.com,*.example.org"
        assert env["CLONE_ALLOWED_NETWORKS"] == "10.0.0.0/8"
        assert env["CLONE_CREDENTIALS_DIR"] == "/var/run/secrets/wp-k8s-service/wordpress"
        assert env["WORKER_RESULT_TTL"] == "3600"

    def test_credentials_are_mounted_in_the_worker_only(self, with_clone_targets: list[dict[str, Any]]) -> None:
        spec = api_pod(with_clone_targets)
        worker = container(spec, "worker")
        mount = next(m for m in worker["volumeMounts"] if m["name"] == "clone-credentials")
        assert mount == {
            "name": "clone-credentials",
            "mountPath": "/var/run/secrets/wp-k8s-service/wordpress",
            "readOnly": True,
        }
        volume = next(v for v in spec["volumes"] if v["name"] == "clone-credentials")
        assert volume["secret"] == {"secretName": "wordpress-clone-credentials", "defaultMode": 0o440}
        assert "clone-credentials" not in [m["name"] for m in container(spec, "api").get("volumeMounts", [])]

    def test_network_policy_opens_the_web_ports(self, with_clone_targets: list[dict[str, Any]]) -> None:
        # With network policies on, the worker may reach WordPress sites on 80 and 443.
        assert _web_egress(with_clone_targets) == [
            {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]}
        ]

    def test_without_allowed_hosts_no_credentials_or_web_egress(
        self, without_clone_targets: list[dict[str, Any]]
    ) -> None:
        worker = container(api_pod(without_clone_targets), "worker")
        assert "CLONE_CREDENTIALS_DIR" not in env_values(worker)
        assert env_values(worker)["CLONE_ALLOWED_HOSTS"] == ""
        assert not _web_egress(without_clone_targets)
