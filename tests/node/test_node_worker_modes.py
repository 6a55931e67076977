"""The chart's three worker modes on a real node: the worker as a container of the API pods (`sidecar`),
as a native sidecar of the API pods (`worker.nativeSidecar`), and in a Deployment of its own
(`worker.mode: deployment`).

Each mode is installed once (module-scoped, parametrized) into a namespace that enforces the
`restricted` Pod Security Standard, with the Redis on the host behind `redis.existingSecret` and the
password mounted as a file. The tests check what a user relies on: the pods are admitted and Ready (the
probes pass), the password file is where `REDIS_PASSWORD_FILE` points and is the Secret's, the metrics
directory is writable although the root filesystem is not, jobs sent to the queue are processed
exactly once, and the workers' `/metrics`, reached through the chart's metrics Service, count them.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from wp_devsupport.cluster.node_jobs import (
    MODES,
    REDIS_SECRET,
    REPORT,
    RESTRICTED,
    WORKER_CONTAINER,
    Deployer,
    Installed,
    NodeEnv,
    container_status,
    exec_python,
    fullname,
    is_ready,
    processed_pings,
    worker_metrics,
    worker_pods,
)
from wp_devsupport.faults import AofRedis, send_pings, tally, wait_drained

PINGS = 200


@pytest.fixture(scope="module", params=list(MODES))
def installed(
    request: pytest.FixtureRequest, env: NodeEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    redis = AofRedis(tmp_path_factory.mktemp("redis"), bind=(env.node.node_ip,), password=secrets.token_urlsafe(24))
    deployer = Deployer(env, redis, f"modes-{request.param}")
    try:
        yield deployer.install(request.param)
    finally:
        deployer.cleanup()
        redis.stop()


def _pod_of_worker(env: NodeEnv, installed: Installed) -> dict[str, Any]:
    pods = worker_pods(env.kube, installed.namespace)
    assert len(pods) == 1, (
        f"{installed.mode}: expected one pod running the worker, found {[p['metadata']['name'] for p in pods]}"
    )
    return pods[0]


class TestPods:
    def test_every_pod_is_admitted_under_restricted_and_ready(self, env: NodeEnv, installed: Installed) -> None:
        ns = env.kube.get(f"/api/v1/namespaces/{installed.namespace}")
        assert ns is not None
        labels = ns["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in RESTRICTED.items()), labels
        pods = env.kube.pods(installed.namespace)
        names = [p["metadata"]["name"] for p in pods]
        assert all(is_ready(p) for p in pods), f"pods not Ready: {names}"
        refused = [
            e["message"]
            for e in env.kube.events(installed.namespace)
            if e.get("reason") == "FailedCreate" or "violates PodSecurity" in e.get("message", "")
        ]
        assert not refused, f"pods refused by admission: {refused}"
        worker_pod = _pod_of_worker(env, installed)
        spec = worker_pod["spec"]
        status = container_status(worker_pod, WORKER_CONTAINER)
        assert status is not None, "no status of the worker container"
        assert status["ready"], f"worker container not ready: {status}"
        assert status.get("started") is True, status
        init_workers = [c for c in spec.get("initContainers", []) if c["name"] == WORKER_CONTAINER]
        main_workers = [c for c in spec["containers"] if c["name"] == WORKER_CONTAINER]
        owner = worker_pod["metadata"]["labels"]["app.kubernetes.io/component"]
        if installed.mode == "native-sidecar":
            assert len(init_workers) == 1, spec
            assert not main_workers, spec
            assert init_workers[0]["restartPolicy"] == "Always"
            assert owner == "api"
        elif installed.mode == "sidecar":
            assert len(main_workers) == 1, spec
            assert not init_workers, spec
            assert {c["name"] for c in spec["containers"]} >= {"api", WORKER_CONTAINER}
            assert owner == "api"
        else:
            assert len(main_workers) == 1, spec
            assert owner == "worker", spec
            api_pods = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/component") == "api"]
            assert len(api_pods) == 1
            assert all(c["name"] != WORKER_CONTAINER for c in api_pods[0]["spec"]["containers"])
        probes = [
            k for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in (init_workers + main_workers)[0]
        ]
        assert {"startupProbe", "livenessProbe"} <= set(probes), probes

    def test_password_file_is_where_redis_password_file_points(self, env: NodeEnv, installed: Installed) -> None:
        pod = _pod_of_worker(env, installed)["metadata"]["name"]
        seen = exec_python(
            env.node.kubeconfig, installed.namespace, pod,
            "import json, os, hashlib, stat\n"
            "path = os.environ.get('REDIS_PASSWORD_FILE')\n"
            "data = open(path, 'rb').read() if path else b''\n"
            "print(json.dumps({'path': path, 'sha256': hashlib.sha256(data).hexdigest(),"
            " 'in_env': 'REDIS_PASSWORD' in os.environ, 'mode': oct(stat.S_IMODE(os.stat(path).st_mode)),"
            " 'uid': os.getuid()}))",
        )  # fmt: skip
        assert installed.redis.password is not None
        want = hashlib.sha256(installed.redis.password.encode()).hexdigest()
        assert seen["path"] == "/var/run/secrets/wp-k8s-service/redis/password", seen
        assert seen["sha256"] == want, f"the mounted file is not the password of Secret {REDIS_SECRET}: {seen}"
        assert seen["in_env"] is False, "REDIS_PASSWORD is in the worker's environment"
        assert seen["uid"] == 10001, seen

    def test_metrics_dir_is_writable_under_a_read_only_root(self, env: NodeEnv, installed: Installed) -> None:
        pod = _pod_of_worker(env, installed)["metadata"]["name"]
        seen = exec_python(
            env.node.kubeconfig, installed.namespace, pod,
            "import json, os, errno\n"
            "out = {}\n"
            "d = os.environ['PROMETHEUS_MULTIPROC_DIR']\n"
            "out['dir'] = d\n"
            "out['files'] = sorted(os.listdir(d))\n"
            "for where in (d, '/tmp', '/', '/opt/venv', '/app'):\n"
            "    try:\n"
            "        p = os.path.join(where, '.node-test-write')\n"
            "        open(p, 'w').write('x'); os.unlink(p); out[where] = 'ok'\n"
            "    except OSError as e:\n"
            "        out[where] = errno.errorcode.get(e.errno, str(e.errno))\n"
            "print(json.dumps(out))",
        )  # fmt: skip
        assert seen["dir"] == "/var/run/worker-metrics", seen
        writes = (seen[seen["dir"]], seen["/tmp"], seen["/"], seen["/opt/venv"])
        assert writes == ("ok", "ok", "EROFS", "EROFS"), f"metrics dir and /tmp writable, root read-only? {seen}"
        assert any(name.endswith(".db") for name in seen["files"]), f"no multiprocess metrics files: {seen['files']}"


class TestJobs:
    def test_jobs_are_processed_once_and_counted_by_the_metrics_service(
        self, env: NodeEnv, installed: Installed
    ) -> None:
        redis = installed.redis
        started = time.monotonic()
        before = sum(
            processed_pings(w.text)
            for w in worker_metrics(env.kube, env.node.dns_ip, installed.namespace, installed.release)
        )
        nonces = send_pings(redis, PINGS, prefix=f"{installed.mode}-")
        wait_drained(redis, timeout=120)
        result = tally(f"{installed.mode}: jobs through the pods", redis, nonces, started, report=REPORT)
        assert result.lost == 0, f"{result.lost} of {result.sent} jobs never ran: {result.lost_nonces}"
        assert result.duplicated == 0, f"{result.duplicated} jobs ran more than once"
        deadline = time.monotonic() + 30
        counted = before
        scraped = []
        while time.monotonic() < deadline:
            scraped = worker_metrics(env.kube, env.node.dns_ip, installed.namespace, installed.release)
            counted = sum(processed_pings(w.text) for w in scraped)
            if counted - before >= PINGS:
                break
            time.sleep(1)
        service = f"{fullname(installed.release)}-metrics"
        assert counted - before == PINGS, (
            f"{service} reports {counted - before:.0f} successful pings, {PINGS} were processed "
            f"(scraped {[w.address for w in scraped]})"
        )
        pod_ips = {p["status"]["podIP"] for p in worker_pods(env.kube, installed.namespace)}
        assert {w.address for w in scraped} == pod_ips, "the metrics Service does not lead to the worker pods"
