"""Where the worker runs and what its container is: a sidecar of the API (the default), a native
sidecar, or its own Deployment; its environment (the README's contract), writable paths and images."""

from __future__ import annotations

from typing import Any

import pytest

from wp_devsupport.chart import (
    CONTRACT_VARS,
    DOWNWARD_VARS,
    FULLNAME,
    OTEL_VARS,
    HelmError,
    api_pod,
    container,
    env_values,
    find,
    pod_spec,
    render_chart,
    render_scenario,
    with_values,
    worker_pod,
)


class TestSidecarMode:
    def test_worker_is_a_sidecar_of_the_api_by_default(self) -> None:
        objects = render_scenario("defaults")
        spec = api_pod(objects)
        assert [c["name"] for c in spec["containers"]] == ["api", "worker"]
        assert "initContainers" not in spec
        assert not [o for o in objects if o["metadata"]["name"] == f"{FULLNAME}-worker"]
        worker = container(spec, "worker")
        assert worker["image"] == "ghcr.io/wp-k8s-service/worker:0.1.0"
        assert "command" not in worker, "the image ENTRYPOINT runs the worker"
        assert "args" not in worker
        assert worker["ports"] == [{"name": "metrics", "containerPort": 9191, "protocol": "TCP"}]
        for probe in ("startupProbe", "livenessProbe"):
            assert worker[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert "readinessProbe" not in worker
        assert worker["resources"]["requests"]
        assert worker["resources"]["limits"]["memory"]


class TestNativeSidecarMode:
    def test_worker_is_an_init_container_that_keeps_running(self) -> None:
        spec = api_pod(render_scenario("native-sidecar"))
        assert [c["name"] for c in spec["initContainers"]] == ["wait-for-config", "worker"]
        assert [c["name"] for c in spec["containers"]] == ["api"]
        worker = container(spec, "worker")
        assert worker["restartPolicy"] == "Always"
        assert worker["startupProbe"]["httpGet"]["port"] == "metrics"
        # The larger grace period of the two wins, so the worker keeps its shutdown window.
        assert spec["terminationGracePeriodSeconds"] == 120


class TestDeploymentMode:
    def test_worker_has_its_own_deployment(self) -> None:
        objects = render_scenario("worker-deployment-keda")
        api = api_pod(objects)
        assert [c["name"] for c in api["containers"]] == ["api"]
        deployment = find(objects, "Deployment", f"{FULLNAME}-worker")
        assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
        spec = pod_spec(deployment)
        worker = container(spec, "worker")
        assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert env_values(worker)["WORKER_PROCESSES"] == "2"
        assert "checksum/redis-secret" in deployment["spec"]["template"]["metadata"]["annotations"]
        assert worker_pod(objects) == spec


class TestWorkerReadiness:
    """`/readyz` (Redis answers) gates a separate worker Deployment; a sidecar's readiness is the API pod's,
    so there it is off, or `/healthz` only: a Redis outage must never take the API out of its Service."""

    @staticmethod
    def _worker(mode: str, native: bool, **probe: Any) -> dict[str, Any]:
        worker: dict[str, Any] = {"mode": mode, "nativeSidecar": native, "readinessProbe": probe}
        if native:
            worker["terminationGracePeriodSeconds"] = 120
        values = with_values({"worker": worker})
        objects = render_chart(values)
        spec = worker_pod(objects) if mode == "deployment" else api_pod(objects)
        return container(spec, "worker")

    @pytest.mark.parametrize(
        ("mode", "native", "probe", "path"),
        [
            ("deployment", False, {}, "/readyz"),
            ("deployment", False, {"path": "/healthz"}, "/healthz"),
            ("deployment", False, {"enabled": False}, None),
            ("sidecar", False, {}, None),
            ("sidecar", True, {}, None),
            ("sidecar", False, {"enabled": True}, "/healthz"),
            ("sidecar", True, {"enabled": True, "path": "/healthz"}, "/healthz"),
        ],
    )
    def test_path_and_default_by_mode(self, mode: str, native: bool, probe: dict[str, Any], path: str | None) -> None:
        worker = self._worker(mode, native, **probe)
        if path is None:
            assert "readinessProbe" not in worker
        else:
            assert worker["readinessProbe"]["httpGet"] == {"path": path, "port": "metrics"}
        assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness never depends on Redis"

    @pytest.mark.parametrize("native", [False, True])
    def test_readyz_in_a_sidecar_is_refused(self, native: bool) -> None:
        with pytest.raises(HelmError, match=r"worker\.readinessProbe\.path /readyz needs worker\.mode=deployment"):
            self._worker("sidecar", native, enabled=True, path="/readyz")

    @pytest.mark.parametrize("scenario", ["defaults", "worker-deployment-keda"])
    def test_metrics_service_keeps_unready_workers_scraped(self, scenario: str) -> None:
        service = find(render_scenario(scenario), "Service", f"{FULLNAME}-metrics")
        assert service["spec"]["publishNotReadyAddresses"] is True


class TestWorkerContainer:
    def test_environment_follows_the_contract(self) -> None:
        worker = container(api_pod(render_scenario("defaults")), "worker")
        env = env_values(worker)
        unknown = set(env) - CONTRACT_VARS - OTEL_VARS - set(DOWNWARD_VARS)
        assert not unknown, f"variables the worker contract does not define: {unknown}"
        assert {"WORKER_SHUTDOWN_TIMEOUT", "PROMETHEUS_MULTIPROC_DIR", "REDIS_PASSWORD_FILE"} <= CONTRACT_VARS
        assert env["WORKER_QUEUES"] == "clone-queue,ping"
        assert env["WORKER_PROCESSES"] == "1"
        assert env["WORKER_THREADS"] == "8"
        assert env["WORKER_SHUTDOWN_TIMEOUT"] == "60"
        assert env["WORKER_TELEMETRY_FLUSH_TIMEOUT"] == "5"
        assert env["WORKER_TRACE_ARGUMENTS"] == "false"
        assert env["METRICS_PORT"] == "9191"
        assert env["PROMETHEUS_MULTIPROC_DIR"] == "/var/run/worker-metrics"
        assert (env["LOG_LEVEL"], env["LOG_FORMAT"]) == ("INFO", "json")
        assert env["REDIS_HOST"] == "redis-master.redis.svc.cluster.local"
        assert (env["REDIS_PORT"], env["REDIS_DB"], env["REDIS_TLS"]) == ("6379", "0", "false")
        assert env["REDIS_PASSWORD_FILE"] == "/var/run/secrets/wp-k8s-service/redis/password"
        assert "REDIS_PASSWORD" not in env
        assert "REDIS_URL" not in env

    def test_has_writable_tmp_and_metrics_dirs(self) -> None:
        spec = api_pod(render_scenario("defaults"))
        worker = container(spec, "worker")
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in worker["volumeMounts"]}
        for path in ("/tmp", "/var/run/worker-metrics"):
            assert "emptyDir" in volumes[mounts[path]["name"]], path
        assert worker["securityContext"]["readOnlyRootFilesystem"] is True
        password = mounts["/var/run/secrets/wp-k8s-service/redis"]
        assert password["readOnly"] is True
        secret = volumes[password["name"]]["secret"]
        assert secret["items"] == [{"key": "redis-password", "path": "password"}]
        assert secret["defaultMode"] == 0o440


DIGEST = "sha256:" + "a" * 64


@pytest.fixture(scope="module")
def custom_images() -> dict[str, Any]:
    """The API pod with a tagged API image and a worker image pinned by digest."""
    objects = render_chart(
        with_values(
            {
                "api": {
                    "image": {
                        "repository": "registry.example/api",
                        "tag": "2.3.4",
                        "digest": "",
                        "pullPolicy": "Always",
                    }
                },
                "worker": {
                    "image": {
                        "repository": "ghcr.io/wp-k8s-service/worker",
                        "tag": "",
                        "digest": DIGEST,
                        "pullPolicy": "IfNotPresent",
                    }
                },
            }
        )
    )
    return api_pod(objects)


class TestImages:
    def test_a_tag_is_used_as_given(self, custom_images: dict[str, Any]) -> None:
        assert container(custom_images, "api")["image"] == "registry.example/api:2.3.4"

    def test_a_digest_pins_the_app_version_tag(self, custom_images: dict[str, Any]) -> None:
        assert container(custom_images, "worker")["image"] == f"ghcr.io/wp-k8s-service/worker:0.1.0@{DIGEST}"

    def test_the_tag_is_the_service_version(self, custom_images: dict[str, Any]) -> None:
        assert "service.version=2.3.4" in env_values(container(custom_images, "api"))["OTEL_RESOURCE_ATTRIBUTES"]
