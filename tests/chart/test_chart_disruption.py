"""Disruptions: PodDisruptionBudgets, grace periods long enough for the API and worker shutdowns, the API's
preStop and its probes (liveness tolerant, readiness quick)."""

from __future__ import annotations

import yaml

from wp_devsupport.chart import (
    CHART,
    FULLNAME,
    SCENARIOS,
    api_pod,
    container,
    default_values,
    env_values,
    find_all,
    render_chart,
    render_scenario,
    with_values,
    worker_pod,
)

VALUES_API = yaml.safe_load((CHART / "values.yaml").read_text())["api"]


class TestPodDisruptionBudget:
    def test_api_only_by_default(self) -> None:
        pdbs = find_all(render_scenario("defaults"), "PodDisruptionBudget")
        assert [(p["metadata"]["name"], p["spec"]["maxUnavailable"]) for p in pdbs] == [(FULLNAME, 1)]

    def test_worker_deployment_gets_its_own(self) -> None:
        names = sorted(
            p["metadata"]["name"] for p in find_all(render_scenario("worker-deployment-keda"), "PodDisruptionBudget")
        )
        assert names == [FULLNAME, f"{FULLNAME}-worker"]


class TestGracePeriod:
    def test_sidecar_pod_covers_the_worker_shutdown(self) -> None:
        spec = api_pod(render_scenario("defaults"))
        env = env_values(container(spec, "worker"))
        budget = float(env["WORKER_SHUTDOWN_TIMEOUT"]) + float(env["WORKER_TELEMETRY_FLUSH_TIMEOUT"])
        assert spec["terminationGracePeriodSeconds"] > budget

    def test_worker_deployment_gets_the_worker_grace_period(self) -> None:
        spec = worker_pod(render_scenario("worker-deployment-keda"))
        env = env_values(container(spec, "worker"))
        assert env["WORKER_SHUTDOWN_TIMEOUT"] == "300"
        assert spec["terminationGracePeriodSeconds"] == 330


class TestApiPreStop:
    """The API keeps serving for a while after its pod is told to stop, so rollouts and scale-in drop no
    request while endpoints, kube-proxy and Ingress controllers catch up."""

    def test_sleeps_before_sigterm_by_default(self) -> None:
        api = container(api_pod(render_scenario("defaults")), "api")
        assert api["lifecycle"] == {"preStop": {"sleep": {"seconds": 10}}}

    def test_kubernetes_1_29_sleeps_with_the_image_sleep_binary(self) -> None:
        api = container(api_pod(render_chart(default_values(), kube_version="1.29")), "api")
        assert api["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "10"]}}}

    def test_zero_turns_it_off(self) -> None:
        api = container(api_pod(render_chart(with_values({"api": {"preStopSleepSeconds": 0}}))), "api")
        assert "lifecycle" not in api

    def test_a_custom_lifecycle_replaces_it(self) -> None:
        lifecycle = {"preStop": {"httpGet": {"path": "/drain", "port": "http"}}}
        api = container(api_pod(render_chart(with_values({"api": {"lifecycle": lifecycle}}))), "api")
        assert api["lifecycle"] == lifecycle

    def test_the_grace_period_covers_it(self) -> None:
        spec = api_pod(render_scenario("defaults"))
        assert (
            spec["terminationGracePeriodSeconds"] > container(spec, "api")["lifecycle"]["preStop"]["sleep"]["seconds"]
        )


class TestApiProbes:
    def test_liveness_is_more_tolerant_than_readiness(self) -> None:
        api = container(api_pod(render_scenario("defaults")), "api")
        window = {p: api[p]["periodSeconds"] * api[p]["failureThreshold"] for p in ("livenessProbe", "readinessProbe")}
        assert window == {"livenessProbe": 60, "readinessProbe": 10}
        assert api["readinessProbe"]["httpGet"]["port"] == api["livenessProbe"]["httpGet"]["port"] == "http"

    def test_paths_are_configurable_apart(self) -> None:
        values = with_values({"api": {"readinessProbe": {**VALUES_API["readinessProbe"], "path": "/readyz"}}})
        api = container(api_pod(render_chart(values)), "api")
        assert (api["livenessProbe"]["httpGet"]["path"], api["readinessProbe"]["httpGet"]["path"]) == (
            "/healthz",
            "/readyz",
        )


class TestNativeSidecarGracePeriod:
    def test_covers_the_api_then_the_worker(self) -> None:
        spec = api_pod(render_scenario("native-sidecar"))
        env = env_values(container(spec, "worker"))
        api_budget = yaml.safe_load(SCENARIOS["native-sidecar"].read_text())["api"]["terminationGracePeriodSeconds"]
        worker_budget = float(env["WORKER_SHUTDOWN_TIMEOUT"]) + float(env["WORKER_TELEMETRY_FLUSH_TIMEOUT"])
        assert spec["terminationGracePeriodSeconds"] > api_budget + worker_budget
