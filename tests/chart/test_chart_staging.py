"""The environment chart: values-staging.yaml through the root chart reaches the application chart."""

from __future__ import annotations

import pytest
from behaviour_support import api_pod_any
from chart_support import STAGING, container, env_map, render_scenario


class TestStaging:
    def test_redis_from_an_existing_secret_and_no_embedded_redis(self) -> None:
        objects = render_scenario(STAGING)
        kinds = {o["kind"] for o in objects}
        assert "Secret" not in kinds, "staging reads its password from an existing Secret"
        assert not [o for o in objects if o["metadata"]["name"].endswith("-redis")], "no embedded Redis"
        spec = api_pod_any(objects)
        volume = next(v for v in spec["volumes"] if v["name"] == "redis-password")["secret"]
        assert (volume["secretName"], volume["items"][0]["key"]) == ("wp-k8s-service-redis", "redis-password")

    @pytest.mark.parametrize(("name", "service"), [("api", "wp-k8s-service"), ("worker", "wp-k8s-service-worker")])
    def test_container_environment(self, name: str, service: str) -> None:
        env = env_map(container(api_pod_any(render_scenario(STAGING)), name))
        assert env["REDIS_HOST"]["value"] == "redis-master.wordpress-staging.svc.cluster.local"
        assert (env["REDIS_PORT"]["value"], env["REDIS_DB"]["value"]) == ("6379", "0")
        assert env["REDIS_PASSWORD_FILE"]["value"].endswith("/password")
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://tempo.observability.svc.cluster.local:4318"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "http/protobuf"
        assert env["OTEL_SERVICE_NAME"]["value"] == service
        assert "deployment.environment=staging" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"].split(",")
