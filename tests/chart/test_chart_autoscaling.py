"""Autoscaling: KEDA scales the worker Deployment on its queues, an HPA scales the API."""

from __future__ import annotations

from chart_support import FULLNAME, find, pod_spec, render_scenario


class TestWorkerKeda:
    def test_scaled_object_targets_the_worker_on_its_queues(self) -> None:
        objects = render_scenario("worker-deployment-keda")
        deployment = find(objects, "Deployment", f"{FULLNAME}-worker")
        # KEDA owns the count; a first install (no live Deployment to look up) starts one worker even when
        # KEDA may scale to zero, so the release works before KEDA first acts.
        assert deployment["spec"]["replicas"] == 1
        scaled = find(objects, "ScaledObject")
        assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 20)
        auth = find(objects, "TriggerAuthentication")
        triggers = scaled["spec"]["triggers"]
        assert sorted(t["metadata"]["listName"] for t in triggers) == ["dramatiq:clone-queue", "dramatiq:ping"]
        for trigger in triggers:
            assert trigger["type"] == "redis"
            assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
            meta = trigger["metadata"]
            assert (meta["host"], meta["port"], meta["databaseIndex"]) == (
                "redis-master.redis.svc.cluster.local",
                "6379",
                "0",
            )
            assert (meta["listLength"], meta["activationListLength"]) == ("10", "1")
            assert "password" not in meta

    def test_keda_reads_the_password_the_worker_mounts(self) -> None:
        objects = render_scenario("worker-deployment-keda")
        spec = pod_spec(find(objects, "Deployment", f"{FULLNAME}-worker"))
        auth = find(objects, "TriggerAuthentication")
        (ref,) = auth["spec"]["secretTargetRef"]
        volume = next(v for v in spec["volumes"] if v["name"] == "redis-password")["secret"]
        assert (ref["parameter"], ref["name"], ref["key"]) == (
            "password",
            volume["secretName"],
            volume["items"][0]["key"],
        )
        assert ref["name"] == "redis"


class TestApiAutoscaling:
    def test_starts_at_the_autoscaler_floor(self) -> None:
        # Later upgrades render the live count (a lookup; see tests/cluster), never a reset to 1.
        objects = render_scenario("worker-deployment-keda")
        hpa_floor = find(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"]
        assert find(objects, "Deployment", FULLNAME)["spec"]["replicas"] == hpa_floor

    def test_hpa_scales_the_api_on_cpu_and_memory(self) -> None:
        hpa = find(render_scenario("worker-deployment-keda"), "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
        assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
