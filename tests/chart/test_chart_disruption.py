"""Disruptions: PodDisruptionBudgets, and grace periods long enough for the worker's shutdown."""

from __future__ import annotations

from behaviour_support import api_pod, worker_pod
from chart_support import FULLNAME, container, env_values, find_all, render_scenario


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
