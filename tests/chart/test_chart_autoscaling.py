"""Autoscaling: KEDA scales the worker Deployment on all outstanding work, an HPA scales the API, and a
Deployment whose count an autoscaler owns renders no `replicas`."""

from __future__ import annotations

from typing import Any

import pytest
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from wp_devsupport.chart import FULLNAME, HELMS, find, pod_spec, render_chart, render_scenario, with_values
from wp_devsupport.redis_server import RedisServer

WORKER = f"{FULLNAME}-worker"


def _keda(extra: dict[str, Any]) -> list[dict[str, Any]]:
    return render_chart(with_values({"worker": {"mode": "deployment", "keda": {"enabled": True, **extra}}}))


class TestWorkerKeda:
    def test_scaled_object_targets_the_worker(self) -> None:
        objects = render_scenario("worker-deployment-keda")
        scaled = find(objects, "ScaledObject")
        assert scaled["spec"]["scaleTargetRef"]["name"] == find(objects, "Deployment", WORKER)["metadata"]["name"]
        assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 20)
        assert scaled["spec"]["cooldownPeriod"] == 600

    def test_triggers_count_ready_running_and_delayed_jobs_of_every_queue(self) -> None:
        objects = render_scenario("worker-deployment-keda")
        scaled = find(objects, "ScaledObject")
        auth = find(objects, "TriggerAuthentication")
        triggers = {t["name"]: t for t in scaled["spec"]["triggers"]}
        # `.msgs`: every unacknowledged message (ready or running); `.DQ.msgs`: delayed jobs and retries.
        assert {name: t["metadata"]["listName"] for name, t in triggers.items()} == {
            "clone_queue_pending": "dramatiq:clone-queue.msgs",
            "clone_queue_delayed": "dramatiq:clone-queue.DQ.msgs",
            "ping_pending": "dramatiq:ping.msgs",
            "ping_delayed": "dramatiq:ping.DQ.msgs",
        }
        for trigger in triggers.values():
            assert trigger["type"] == "redis"
            assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
            meta = trigger["metadata"]
            assert (meta["host"], meta["port"], meta["databaseIndex"]) == (
                "redis-master.redis.svc.cluster.local",
                "6379",
                "0",
            )
            assert "password" not in meta
        modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
        assert sorted(modifiers["formula"].split(" + ")) == sorted(triggers)
        assert (modifiers["metricType"], modifiers["activationTarget"]) == ("AverageValue", "0")

    @pytest.mark.parametrize(
        ("processes", "threads", "per_thread", "target"),
        [(1, 8, 1, "8"), (2, 4, 0.5, "4"), (4, 16, 2, "128"), (1, 3, 0.5, "2")],
    )
    def test_target_is_jobs_per_worker_thread(
        self, processes: int, threads: int, per_thread: float, target: str
    ) -> None:
        values = with_values(
            {
                "worker": {
                    "mode": "deployment",
                    "processes": processes,
                    "threads": threads,
                    "keda": {"enabled": True, "targetJobsPerThread": per_thread},
                }
            }
        )
        scaled = find(render_chart(values), "ScaledObject")
        assert scaled["spec"]["advanced"]["scalingModifiers"]["target"] == target
        assert {t["metadata"]["listLength"] for t in scaled["spec"]["triggers"]} == {target}

    def test_advanced_and_fallback_pass_through(self) -> None:
        scaled = find(render_scenario("worker-deployment-keda"), "ScaledObject")
        assert scaled["spec"]["fallback"] == {"failureThreshold": 3, "replicas": 2}
        hpa_config = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
        assert hpa_config == {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}}}

    def test_no_fallback_by_default(self) -> None:
        scaled = find(_keda({}), "ScaledObject")
        assert "fallback" not in scaled["spec"]
        assert list(scaled["spec"]["advanced"]) == ["scalingModifiers"]

    def test_keda_reads_the_password_the_worker_mounts(self) -> None:
        objects = render_scenario("worker-deployment-keda")
        spec = pod_spec(find(objects, "Deployment", WORKER))
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
    def test_hpa_scales_the_api_on_cpu_and_memory(self) -> None:
        hpa = find(render_scenario("worker-deployment-keda"), "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
        assert hpa["spec"]["minReplicas"] == 2
        assert {m["containerResource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}

    @pytest.mark.parametrize("mode", ["sidecar", "deployment"])
    def test_hpa_measures_the_api_container_only(self, mode: str) -> None:
        """In sidecar mode the worker shares the pod: whole-pod CPU would let worker load scale the API."""
        values = with_values(
            {
                "worker": {"mode": mode},
                "api": {"autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 70}},
            }
        )
        objects = render_chart(values)
        hpa = find(objects, "HorizontalPodAutoscaler")
        metrics = hpa["spec"]["metrics"]
        assert [m["type"] for m in metrics] == ["ContainerResource", "ContainerResource"]
        assert [(m["containerResource"]["name"], m["containerResource"]["container"]) for m in metrics] == [
            ("cpu", "api"),
            ("memory", "api"),
        ]
        assert [m["containerResource"]["target"]["averageUtilization"] for m in metrics] == [75, 70]
        containers = [c["name"] for c in pod_spec(find(objects, "Deployment", FULLNAME))["containers"]]
        assert "api" in containers
        assert ("worker" in containers) == (mode == "sidecar")


class TestReplicas:
    """An autoscaler owns the count: the Deployment renders no `replicas` under `helm template` (as Argo CD
    and Flux render it), so no sync resets it. tests/cluster checks `helm upgrade` on a live API server."""

    @pytest.mark.parametrize("helm", HELMS)
    def test_left_out_when_an_autoscaler_owns_them(self, helm: str) -> None:
        objects = render_scenario("worker-deployment-keda", helm)
        assert "replicas" not in find(objects, "Deployment", FULLNAME)["spec"], "the HPA owns the API's count"
        assert "replicas" not in find(objects, "Deployment", WORKER)["spec"], "KEDA owns the worker's count"

    def test_rendered_otherwise(self) -> None:
        values = with_values({"api": {"replicaCount": 3}, "worker": {"mode": "deployment", "replicaCount": 4}})
        objects = render_chart(values)
        assert find(objects, "Deployment", FULLNAME)["spec"]["replicas"] == 3
        assert find(objects, "Deployment", WORKER)["spec"]["replicas"] == 4


#: KEDA 2.20's redis scaler counts a key with this script (pkg/scalers/redis_scaler.go, verbatim).
KEDA_REDIS_SCALER_LUA = """
    local listName = KEYS[1]
    local listType = redis.call('type', listName).ok
    if listType == 'zset' then
        return redis.call('zcard', listName)
    elseif listType == 'set' then
        return redis.call('scard', listName)
    elseif listType == 'hash' then
        return redis.call('hlen', listName)
    elseif listType == 'list' or listType == 'none' then
        return redis.call('llen', listName)
    else
        return redis.error_reply('ERR unsupported key type: ' .. listType)
    end
"""


@pytest.mark.integration
class TestKedaOnARealBroker:
    """The keys the ScaledObject watches, counted the way KEDA counts them, against what a real Dramatiq
    Redis broker stores for ready, running and delayed messages."""

    def test_outstanding_work_is_ready_plus_running_plus_delayed(self, redis_server: RedisServer) -> None:
        scaled = find(render_scenario("worker-deployment-keda"), "ScaledObject")
        keys = {t["name"]: t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
        terms = scaled["spec"]["advanced"]["scalingModifiers"]["formula"].split(" + ")
        client = redis_server.client()
        client.flushdb()
        count = client.register_script(KEDA_REDIS_SCALER_LUA)

        def outstanding() -> int:
            return sum(int(count(keys=[keys[term]])) for term in terms)

        broker = RedisBroker(url=redis_server.url, middleware=[])
        try:
            broker.declare_queue("clone-queue")

            def message() -> Message[Any]:
                return Message(queue_name="clone-queue", actor_name="clone_wordpress", args=(), kwargs={}, options={})

            broker.enqueue(message())
            broker.enqueue(message(), delay=3_600_000)  # a retry backing off, or a job scheduled for later
            assert outstanding() == 2
            assert client.llen("dramatiq:clone-queue") == 1, "the ready list alone sees only one"

            consumer = broker.consume("clone-queue", prefetch=1, timeout=100)
            running = next(m for m in consumer if m is not None)
            assert client.llen("dramatiq:clone-queue") == 0, "a fetched job leaves the ready list"
            assert outstanding() == 2, "a running job still counts: its pod must not be scaled in"
            consumer.ack(running)
            consumer.close()
            assert outstanding() == 1, "the delayed job keeps a worker, even with minReplicaCount 0"
        finally:
            broker.close()
            client.flushdb()
