"""A rolling update under load loses no job: `helm upgrade` changes the pod template (a pod annotation)
while a stream of pings is being processed, the Deployment replaces its pods, and Redis's append-only
file on the host says every ping ran, none twice without a recorded retry, and every old pod stopped
within its terminationGracePeriodSeconds.

How long a stopped pod took is measured from the deletion request (the pod's deletionTimestamp minus its
grace period, seconds resolution; or when the watch first saw it, whichever is earlier) to the pod's
removal, which comes after all its containers exited.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from wp_devsupport.cluster.node_jobs import (
    REPORT,
    Deploy,
    NodeEnv,
    PingStream,
    PodWatcher,
    deep_merge,
    longest_gap,
    note,
    probe_times,
    wait_deployments_ready,
    wait_for,
    worker_pods,
)
from wp_devsupport.faults import AofRedis, tally, wait_drained, where_are

PINGS = 2000
#: Pings that each keep a worker thread busy for a moment: jobs really are running when SIGTERM comes.
HOLD_SECONDS = 0.02


def rollout_values(mode: str, revision: str) -> dict[str, Any]:
    """A pod annotation on the Deployment that runs the worker: changing it rolls that Deployment."""
    key = "worker" if mode == "deployment" else "api"
    return {key: {"podAnnotations": {"wp-k8s-service.test/revision": revision}}}


@pytest.mark.parametrize("mode", ["sidecar", "native-sidecar", "deployment"])
class TestRollingUpdate:
    def test_helm_upgrade_mid_stream_loses_no_job(
        self, mode: str, env: NodeEnv, deploy: Deploy, host_redis: AofRedis
    ) -> None:
        release = deploy(mode, **deep_merge({"worker": {"threads": 4}}, rollout_values(mode, "1")))
        old_pods = {p["metadata"]["name"] for p in worker_pods(env.kube, release.namespace)}
        grace = {p["metadata"]["name"]: p["spec"]["terminationGracePeriodSeconds"] for p in release.pods}
        started = time.monotonic()
        with PodWatcher(env.kube, release.namespace, max_seconds=400) as watcher:
            stream = PingStream(host_redis, PINGS, batch=100, interval=1.0, prefix="r", hold_seconds=HOLD_SECONDS)
            stream.start()
            wait_for(lambda: len(stream.sent) >= 300, 60, "the first 300 pings sent")
            upgrade_at = time.time()
            # helm returns once the objects are updated; the Deployment controller rolls the pods.
            env.helm.upgrade(release.release, release.namespace, deep_merge(release.values, rollout_values(mode, "2")))
            try:
                new_pods = wait_deployments_ready(env.kube, release.namespace, timeout=240)
            except AssertionError as e:
                pytest.fail(f"the rollout did not finish: {e}")
            rolled_at = time.time()
            nonces = stream.join(timeout=120)
            try:
                wait_drained(host_redis, timeout=180)
            except TimeoutError:
                pytest.fail(f"jobs left in Redis after the rollout: {where_are(host_redis)}")
            wait_for(
                lambda: all(watcher.snapshot().get(n) and watcher.snapshot()[n].gone_at for n in old_pods),
                60, "the old pods gone",
            )  # fmt: skip
            history = watcher.snapshot()
        times = probe_times(host_redis, nonces)
        result = tally(f"rolling update ({mode})", host_redis, nonces, started, report=REPORT)
        new_names = {p["metadata"]["name"] for p in new_pods}
        assert old_pods.isdisjoint(new_names), f"the upgrade replaced no pod: old {old_pods}, now {new_names}"
        assert result.lost == 0, f"{result.lost} of {result.sent} jobs never ran: {result.lost_nonces}"
        assert result.duplicated == result.duplicated_after_retry, (
            f"{result.duplicated - result.duplicated_after_retry} jobs ran twice without a recorded retry"
        )
        stops = {name: history[name] for name in old_pods}
        shutdowns = {name: h.shutdown_seconds for name, h in stops.items()}
        assert all(s is not None for s in shutdowns.values()), f"an old pod was never seen going: {shutdowns}"
        over = {n: s for n, s in shutdowns.items() if s is not None and s > grace[n]}
        assert not over, f"old pods took longer than their grace period {grace}: {over}"
        # The rollout really happened while jobs were being processed: jobs ran before the first old pod
        # was asked to stop and after it.
        first_stop = min(h.deletion_requested or h.deleting_seen or 0 for h in stops.values())
        before = sum(1 for t in times.values() if t < first_stop)
        after = sum(1 for t in times.values() if t >= first_stop)
        assert before > 0, f"no job ran before the old pods were stopped (upgrade at {upgrade_at:.1f})"
        assert after > 0, "no job ran after the old pods were asked to stop: the stream ended before the rollout"
        _, gap = longest_gap(times, first_stop, max(times.values()))
        longest = max(s for s in shutdowns.values() if s is not None)
        worker_stops = [h.worker_stop_seconds for h in stops.values() if h.worker_stop_seconds is not None]
        note(
            f"rolling update ({mode}): {len(old_pods)} old pod(s) replaced in {rolled_at - upgrade_at:.1f}s after "
            f"helm upgrade; longest old-pod shutdown {longest:.1f}s (grace {max(grace.values())}s), worker "
            f"container exit {max(worker_stops, default=float('nan')):.0f}s after the request; {before} jobs ran "
            f"before the first stop, {after} after; longest pause in processing {gap:.1f}s (the stream sends a batch "
            f"every {stream.interval:.1f}s: a pause that long is the stream's own)"
        )
