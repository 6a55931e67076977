"""Redis wiring: the same connection settings for every client, an existing Secret passed through the
environment with TLS, and the embedded development Redis."""

from __future__ import annotations

from typing import Any

import pytest
from behaviour_support import api_pod, pod_labels
from chart_support import FULLNAME, NAMESPACE, container, env_map, env_values, find, find_all, pod_spec, render_scenario


def _redis_env(ctr: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in env_map(ctr).items() if k.startswith("REDIS_")}


class TestRedisConnection:
    @pytest.mark.parametrize("scenario", ["defaults", "existing-secret", "embedded-redis"])
    def test_api_gets_the_same_redis_settings_as_the_worker(self, scenario: str) -> None:
        spec = api_pod(render_scenario(scenario))
        api, worker = container(spec, "api"), container(spec, "worker")
        assert _redis_env(api) == _redis_env(worker), scenario
        assert _redis_env(api), scenario


class TestExistingSecret:
    def test_password_through_env_with_tls(self) -> None:
        objects = render_scenario("existing-secret")
        assert not find_all(objects, "Secret"), "no chart-managed Secret next to an existing one"
        spec = api_pod(objects)
        for name in ("api", "worker"):
            env = env_map(container(spec, name))
            assert env["REDIS_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "shared-redis", "key": "password"}}
            assert "REDIS_PASSWORD_FILE" not in env
            assert env["REDIS_TLS"]["value"] == "true"
            assert env["REDIS_USERNAME"]["value"] == "wp-worker"
            assert (env["REDIS_PORT"]["value"], env["REDIS_DB"]["value"]) == ("6380", "2")
            assert env["REDIS_TLS_CA_FILE"]["value"] == "/var/run/secrets/wp-k8s-service/redis-ca/ca.pem"
        volume = next(v for v in spec["volumes"] if v["name"] == "redis-ca")
        assert volume["secret"]["secretName"] == "shared-redis-ca"


class TestEmbeddedRedis:
    def test_clients_connect_to_its_service(self) -> None:
        objects = render_scenario("embedded-redis")
        host = f"{FULLNAME}-redis.{NAMESPACE}.svc"
        assert env_values(container(api_pod(objects), "worker"))["REDIS_HOST"] == host
        service = find(objects, "Service", f"{FULLNAME}-redis")
        deployment = find(objects, "Deployment", f"{FULLNAME}-redis")
        assert service["spec"]["selector"].items() <= pod_labels(deployment).items()

    def test_one_replica_recreated(self) -> None:
        deployment = find(render_scenario("embedded-redis"), "Deployment", f"{FULLNAME}-redis")
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}

    def test_password_from_the_managed_secret(self) -> None:
        objects = render_scenario("embedded-redis")
        redis = container(pod_spec(find(objects, "Deployment", f"{FULLNAME}-redis")), "redis")
        assert "$(REDIS_PASSWORD)" in redis["args"]
        assert env_map(redis)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{FULLNAME}-redis"
        assert "Secret" in {o["kind"] for o in objects}
