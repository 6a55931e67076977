"""The kind job's test API (ci/kind/api) and the assertions ci/kind/kind-e2e.sh makes with it.

* app.py is the README's FastAPI example, byte for byte; kind_api.py adds /healthz and POST /pings.
* Its locked requirements agree with the worker's locks.
* A rehearsal of the kind assertions without Kubernetes: a real Redis, the real worker, the real
  collector (bin/otelcol, the release of the kind collector image) running the kind collector's own
  config, and the test API; then ci/kind/e2e_check.py, exactly as the script calls it.
* When a Docker engine answers: the test API image built on the worker image and run hardened
  (read-only root, non-root, no capabilities) against a real Redis.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from wp_devsupport.ci_files import API_DIR, BUILD_API_IMAGE, E2E_CHECK, REPO, collector_config, require_otelcol, run
from wp_devsupport.ports import free_port, wait_for_port
from wp_devsupport.processes import ManagedProcess, wait_until
from wp_devsupport.redis_server import RedisServer
from wp_devsupport.worker import WorkerProcess, clean_environment

README = REPO / "README.md"
_REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)")


def readme_fastapi_block() -> str:
    text = README.read_text(encoding="utf-8")
    heading = "### Enqueueing from the API (FastAPI)"
    assert heading in text, "README lost its FastAPI section"
    section = text[text.index(heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README lost its FastAPI example"
    return match.group(1)


def test_app_is_the_readme_example_byte_for_byte() -> None:
    copy = (API_DIR / "app.py").read_text(encoding="utf-8")
    assert copy == readme_fastapi_block(), (
        "ci/kind/api/app.py differs from the README's FastAPI example: copy the ```python block under "
        '"### Enqueueing from the API (FastAPI)" into it unchanged'
    )


def drive_api(env: dict[str, str], calls: list[dict[str, Any]]) -> dict[str, Any]:
    result = subprocess.run(
        # In ci/kind/api, as the image runs it (WORKDIR /opt/api): see wp_devsupport.kind_api_driver.
        [sys.executable, "-m", "wp_devsupport.kind_api_driver"],
        input=json.dumps(calls),
        env=env,
        cwd=API_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_kind_api_serves_the_readme_routes_plus_healthz_and_pings() -> None:
    env = clean_environment(WORKER_BROKER="stub", OTEL_SDK_DISABLED="true")
    output = drive_api(
        env,
        [
            {"method": "GET", "path": "/healthz"},
            {"method": "POST", "path": "/pings"},
            {
                "method": "POST",
                "path": "/clones",
                "params": {"source_url": "https://a.example", "target_url": "https://b.example"},
            },
        ],
    )
    health, ping, clone = output["answers"]
    assert health == {"status": 200, "body": {"status": "ok"}}
    assert ping["status"] == clone["status"] == 200
    assert re.fullmatch(r"[0-9a-f]{16}", ping["body"]["nonce"])
    assert set(output["routes"]) >= {"/healthz", "/pings", "/clones", "/clones/scheduled"}
    messages = {m["id"]: m for m in output["messages"]}
    assert messages[ping["body"]["job_id"]] == {
        "queue": "ping",
        "id": ping["body"]["job_id"],
        "args": [ping["body"]["nonce"]],
    }
    assert messages[clone["body"]["job_id"]]["queue"] == "clone-queue"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if match := _REQUIREMENT.match(line):
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_api_requirements_are_locked_with_hashes_and_agree_with_the_worker_locks() -> None:
    text = (API_DIR / "requirements.txt").read_text()
    pins = _pins(API_DIR / "requirements.txt")
    wanted = {
        line.split("#")[0].strip().lower()
        for line in (API_DIR / "requirements.in").read_text().splitlines()
        if line.split("#")[0].strip()
    }
    assert wanted == {"fastapi", "uvicorn", "opentelemetry-instrumentation-fastapi"}
    assert wanted <= set(pins)
    # Every requirement carries hashes (the Dockerfile installs with --require-hashes).
    entries = re.findall(r"^(\S+==\S+)((?:[ \\]*\n\s+--hash=sha256:[0-9a-f]{64})*)", text, re.M)
    assert len(entries) == len(pins)
    unhashed = [requirement for requirement, hashes in entries if not hashes]
    assert not unhashed, f"requirements without hashes: {unhashed}"
    runtime, dev = _pins(REPO / "requirements" / "runtime.txt"), _pins(REPO / "requirements" / "dev.txt")
    drift = {
        name: (version, runtime.get(name), dev.get(name))
        for name, version in pins.items()
        if version not in {v for v in (runtime.get(name), dev.get(name)) if v} and (name in runtime or name in dev)
    }
    assert not drift, f"re-lock ci/kind/api/requirements.txt (see requirements.in): {drift}"
    assert pins["fastapi"] == dev["fastapi"], "the FastAPI the README example is tested with"


# ----------------------------------------------------------------------------- rehearsal


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, ManagedProcess]]:
    """bin/otelcol with the kind collector's config, listening on a free loopback port."""
    otelcol = require_otelcol()
    port = free_port()
    config = collector_config()
    assert config.count("0.0.0.0:4318") == 1
    path = tmp_path / "otelcol.yaml"
    path.write_text(config.replace("0.0.0.0:4318", f"127.0.0.1:{port}"))
    process = ManagedProcess("otelcol", [str(otelcol), f"--config={path}"], tmp_path / "otelcol.log")
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.stop(timeout=10)


def e2e_check(*args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, str(E2E_CHECK), *args], cwd=REPO)


def test_rehearsal_of_the_kind_assertions_against_real_redis_worker_and_collector(
    tmp_path: Path, collector: tuple[str, ManagedProcess]
) -> None:
    endpoint, otelcol = collector
    redis_server = RedisServer(tmp_path / "redis")
    worker = None
    try:
        common = {
            "REDIS_URL": redis_server.url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=kind-rehearsal",
        }
        worker = WorkerProcess(
            tmp_path,
            clean_environment(**common, OTEL_SERVICE_NAME="wp-k8s-service-worker", WORKER_THREADS="2"),
        )
        worker.wait_healthy()
        before = tmp_path / "metrics-before.txt"
        before.write_text(requests.get(f"{worker.url}/metrics", timeout=10).text)

        output = drive_api(
            clean_environment(**common, OTEL_SERVICE_NAME="wp-k8s-service"),
            [
                {"method": "POST", "path": "/pings"},
                {"method": "POST", "path": "/pings"},
                {
                    "method": "POST",
                    "path": "/clones",
                    "params": {"source_url": "https://s.example", "target_url": "https://t.example"},
                },
                {
                    "method": "POST",
                    "path": "/clones/scheduled",
                    "params": {
                        "source_url": "https://s.example",
                        "target_url": "https://t.example",
                        "delay_seconds": 1,
                    },
                },
            ],
        )
        ids = [answer["body"]["job_id"] for answer in output["answers"]]
        jobs = [f"ping={ids[0]}", f"ping={ids[1]}", f"clone-queue={ids[2]}", f"clone-queue={ids[3]}"]

        after = tmp_path / "metrics-after.txt"
        metrics_args = ["metrics", "--baseline", str(before), "--current", str(after)]
        metrics_args += ["--expect", "ping,ping,success=2", "--expect", "clone-queue,clone_wordpress,failed=2"]

        def metrics_ok() -> bool:
            after.write_text(requests.get(f"{worker.url}/metrics", timeout=10).text)
            return e2e_check(*metrics_args).returncode == 0

        wait_until(metrics_ok, 60, interval=0.5, message="the jobs in the worker's /metrics")
        report = e2e_check(*metrics_args)
        assert report.returncode == 0, report.stdout

        trace_args = ["traces", "--log", str(otelcol.log_path)]
        for job in jobs:
            trace_args += ["--job", job]
        wait_until(lambda: e2e_check(*trace_args).returncode == 0, 30, interval=0.5, message="the jobs' traces")
        report = e2e_check(*trace_args)
        assert report.returncode == 0, report.stdout
        assert report.stdout.count(": ok, trace ") == 4, report.stdout
        # A job that was never sent is reported missing (the check can fail).
        missing = e2e_check(*trace_args, "--job", f"ping={uuid.uuid4()}")
        assert missing.returncode == 1
        assert "MISSING" in missing.stdout
    except BaseException:
        print(otelcol.output()[-20000:])
        if worker is not None:
            print(worker.output()[-20000:])
        raise
    finally:
        if worker is not None:
            worker.stop()
        redis_server.stop()


# ----------------------------------------------------------------------------- the image


def _docker() -> str:
    docker = shutil.which("docker") or "/usr/bin/docker"
    if run([docker, "info"], timeout=30).returncode == 0:
        return docker
    if os.geteuid() == 0 and shutil.which("dockerd"):
        return docker  # ci/build-image.sh starts dockerd
    pytest.skip("no Docker engine answers and none can be started here (no dockerd, or not root)")


def test_api_image_builds_on_the_worker_image_and_serves_hardened(tmp_path: Path) -> None:
    docker = _docker()
    tag = f"ci-test-{os.getpid()}"
    worker_image, api_image = f"wp-k8s-service-worker:{tag}", f"wp-k8s-service-api:{tag}"
    container = f"wp-api-{tag}"
    redis_server = RedisServer(tmp_path / "redis")
    try:
        built = run(
            [str(REPO / "ci" / "build-image.sh")], env={**os.environ, "IMAGE": worker_image}, timeout=1200, cwd=REPO
        )
        assert built.returncode == 0, built.stderr[-5000:]
        started = time.monotonic()
        built = run(
            [str(BUILD_API_IMAGE)],
            env={**os.environ, "IMAGE": api_image, "WORKER_IMAGE": worker_image},
            timeout=900,
            cwd=REPO,
        )
        assert built.returncode == 0, built.stderr[-5000:]
        print(f"test API image built in {time.monotonic() - started:.1f}s")
        config = json.loads(run([docker, "image", "inspect", api_image]).stdout)[0]["Config"]
        assert config["User"] == "10001:10001"
        assert config["Cmd"] == ["--port", "8000"]

        port = free_port()
        run([docker, "rm", "-f", container])
        # The chart's hardening: read-only root, no capabilities, no privilege escalation, /tmp a
        # tmpfs; the user is the image's own (10001). The port replaces the image's CMD.
        command = [docker, "run", "-d", "--name", container, "--network", "host", "--read-only"]
        command += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--tmpfs", "/tmp"]
        command += ["-e", f"REDIS_URL={redis_server.url}", "-e", "OTEL_TRACES_EXPORTER=none"]
        started_run = run([*command, api_image, "--port", str(port)])
        assert started_run.returncode == 0, started_run.stderr

        def healthy() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, 60, interval=0.3, message="the API image's /healthz")
        uid = run([docker, "exec", container, "python", "-c", "import os; print(os.getuid(), os.getgid())"])
        assert uid.stdout.split() == ["10001", "10001"]
        answer = requests.post(f"http://127.0.0.1:{port}/pings", timeout=10).json()
        client: redis.Redis = redis_server.client()
        # Dramatiq's Redis broker keys its message hash by a Redis-side id; the message is the value.
        stored = [json.loads(raw) for raw in client.hvals("dramatiq:ping.msgs")]
        assert [(m["message_id"], m["args"]) for m in stored] == [(answer["job_id"], [answer["nonce"]])]
        stopped = time.monotonic()
        assert run([docker, "stop", "-t", "20", container], timeout=60).returncode == 0
        assert time.monotonic() - stopped < 15
        state = json.loads(run([docker, "inspect", container]).stdout)[0]["State"]
        assert state["ExitCode"] == 0, run([docker, "logs", container]).stderr[-3000:]
    finally:
        run([docker, "rm", "-f", container])
        run([docker, "image", "rm", api_image, worker_image])
        redis_server.stop()
