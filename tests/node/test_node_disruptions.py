"""Disruptions of a running worker pod mid-stream lose no job (counted from Redis's append-only file on
the host), and the worker comes back on its own:

* `kubectl delete pod` of the worker pod: a graceful stop (SIGTERM, the jobs running finish), the
  Deployment starts a new pod. No job may run twice without a recorded retry.
* the worker's main process killed with SIGKILL from the node (`ctr tasks ls` gives its host pid), in
  each worker mode: the container dies with every job it was running, the kubelet restarts that
  container alone (the API container of a sidecar pod keeps running), and the lossless broker gives
  the jobs of the dead consumer to the new one once its heartbeat is older than
  WORKER_HEARTBEAT_TIMEOUT (10 s here). Those jobs may run a second time (at least once), at most
  as many as were running (processes x threads).

Recovery is measured on the host clock: until the replacement is Ready, and the longest pause in
processing (no ping ran) after the disruption.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from wp_devsupport.cluster.node_jobs import (
    REPORT,
    WORKER_CONTAINER,
    Deploy,
    NodeEnv,
    NodeTestError,
    PingStream,
    PodWatcher,
    container_status,
    longest_gap,
    note,
    probe_times,
    wait_deployments_ready,
    wait_for,
    worker_pods,
)
from wp_devsupport.faults import AofRedis, tally, wait_drained, where_are

MODE = "deployment"
PINGS = 1000
THREADS = 4
HEARTBEAT_TIMEOUT = 10
HOLD_SECONDS = 0.05
VALUES = {
    "worker": {
        "threads": THREADS,
        "extraEnv": [{"name": "WORKER_HEARTBEAT_TIMEOUT", "value": str(HEARTBEAT_TIMEOUT)}],
    }
}


def _stream(redis: AofRedis, prefix: str) -> PingStream:
    stream = PingStream(redis, PINGS, batch=50, interval=0.5, prefix=prefix, hold_seconds=HOLD_SECONDS).start()
    wait_for(lambda: len(stream.sent) >= 200, 60, "the first 200 pings sent")
    return stream


def _drain(redis: AofRedis, timeout: float) -> None:
    try:
        wait_drained(redis, timeout=timeout)
    except TimeoutError:
        pytest.fail(f"jobs left in Redis after the disruption: {where_are(redis)}")


class TestPodDeletion:
    def test_kubectl_delete_pod_mid_stream_loses_nothing(
        self, env: NodeEnv, deploy: Deploy, host_redis: AofRedis
    ) -> None:
        release = deploy(MODE, **VALUES)
        (victim,) = worker_pods(env.kube, release.namespace)
        name = victim["metadata"]["name"]
        grace = victim["spec"]["terminationGracePeriodSeconds"]
        started = time.monotonic()
        with PodWatcher(env.kube, release.namespace, max_seconds=300) as watcher:
            stream = _stream(host_redis, "d")
            deleted_at = time.time()
            env.kube.delete_pod(release.namespace, name)
            try:
                wait_deployments_ready(env.kube, release.namespace, timeout=180)
            except NodeTestError as e:
                pytest.fail(f"no replacement of {name} became Ready: {e}")
            nonces = stream.join(timeout=120)
            _drain(host_redis, 120)
            wait_for(lambda: bool(watcher.snapshot()[name].gone_at), 60, f"{name} gone")
            history = watcher.snapshot()
        replacement = [h for n, h in history.items() if n != name and h.first_seen >= deleted_at - 1]
        assert replacement, f"no new pod seen after deleting {name}: {list(history)}"
        ready_at = min(h.ready_at for h in replacement if h.ready_at is not None)
        times = probe_times(host_redis, nonces)
        result = tally("kubectl delete pod mid-stream", host_redis, nonces, started, report=REPORT)
        assert result.lost == 0, f"{result.lost} of {result.sent} jobs never ran: {result.lost_nonces}"
        assert result.duplicated == result.duplicated_after_retry, (
            f"{result.duplicated - result.duplicated_after_retry} jobs ran twice without a recorded retry"
        )
        shutdown = history[name].shutdown_seconds
        assert shutdown is not None, f"{name} was never seen going"
        assert shutdown <= grace, f"{name} took {shutdown:.1f}s to stop, more than its grace period {grace}s"
        gap_start, gap = longest_gap(times, deleted_at, max(times.values()))
        note(
            f"kubectl delete pod: old pod gone {shutdown:.1f}s after the request (grace {grace}s), replacement Ready "
            f"{ready_at - deleted_at:.1f}s after it; processing paused {gap:.1f}s, jobs resumed "
            f"{gap_start + gap - deleted_at:.1f}s after the deletion"
        )


@pytest.mark.parametrize("mode", ["deployment", "sidecar", "native-sidecar"])
class TestWorkerKill:
    def test_sigkill_of_the_worker_main_process_restarts_the_container_and_loses_nothing(
        self, mode: str, env: NodeEnv, deploy: Deploy, host_redis: AofRedis
    ) -> None:
        release = deploy(mode, **VALUES)
        (pod,) = worker_pods(env.kube, release.namespace)
        name = pod["metadata"]["name"]
        status = container_status(pod, WORKER_CONTAINER)
        assert status is not None
        container_id = status["containerID"].removeprefix("containerd://")
        tasks = env.node.ctr("tasks", "ls")
        pids = [int(line.split()[1]) for line in tasks.splitlines()[1:] if line.split()[0] == container_id]
        assert len(pids) == 1, f"the worker container {container_id} is not among the node's tasks:\n{tasks}"
        pid = pids[0]
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")  # noqa: SIM115
        assert b"worker_app" in b" ".join(cmdline), f"pid {pid} is not the worker: {cmdline}"
        processes = int(release.values["worker"].get("processes", 1))
        started = time.monotonic()
        with PodWatcher(env.kube, release.namespace, max_seconds=300) as watcher:
            stream = _stream(host_redis, "k")
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
            wait_for(
                lambda: bool(watcher.snapshot()[name].ready_again), 120, f"the worker of {name} restarted and Ready"
            )
            nonces = stream.join(timeout=120)
            _drain(host_redis, 120)
            history = watcher.snapshot()[name]
            after = next(p for p in env.kube.pods(release.namespace) if p["metadata"]["name"] == name)
        times = probe_times(host_redis, nonces)
        result = tally(f"SIGKILL of the worker's main process ({mode})", host_redis, nonces, started, report=REPORT)
        others = {
            c["name"]: c.get("restartCount", 0)
            for c in (after["status"].get("containerStatuses") or [])
            + (after["status"].get("initContainerStatuses") or [])
            if c["name"] != WORKER_CONTAINER
        }
        assert all(count == 0 for count in others.values()), f"other containers of the pod restarted: {others}"
        assert history.worker_restarts == 1, (
            f"expected one restart of the worker container, saw {history.worker_restarts}"
        )
        assert history.worker_exit_code == 137, (
            f"the container's exit code is {history.worker_exit_code}, not SIGKILL's"
        )
        assert result.lost == 0, f"{result.lost} of {result.sent} jobs never ran: {result.lost_nonces}"
        in_flight = processes * THREADS
        assert result.duplicated <= in_flight, (
            f"{result.duplicated} jobs ran twice: more than the {in_flight} a killed worker can have been running"
        )
        ready_again = history.ready_again[0] - killed_at
        gap_start, gap = longest_gap(times, killed_at, max(times.values()))
        note(
            f"SIGKILL of the worker ({mode}, pid {pid} on the node): container restarted and Ready after "
            f"{ready_again:.1f}s, {len(others)} other container(s) untouched; "
            f"processing paused {gap:.1f}s, jobs resumed {gap_start + gap - killed_at:.1f}s after the kill; "
            f"{result.duplicated} jobs ran twice (at most {in_flight} were running)"
        )
