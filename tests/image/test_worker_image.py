"""The worker image, built here for real (ci/build-image.sh) and run hardened against a real Redis.

The container runs the way the chart runs it: read-only root filesystem, UID/GID 10001, all
capabilities dropped, no-new-privileges, tmpfs for /tmp and the Prometheus multiprocess directory.
`--network host` lets it reach the redis-server these tests start on a loopback port.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from prometheus_client.parser import text_string_to_metric_families

from wp_devsupport.image import (
    MEASUREMENTS,
    ROOT,
    BuiltImage,
    buildkit_cli,
    docker,
    docker_cli,
)
from wp_devsupport.ports import free_port
from wp_devsupport.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

UID = "10001"
SHUTDOWN_TIMEOUT = 10  # WORKER_SHUTDOWN_TIMEOUT given to the container
FLUSH_TIMEOUT = 2  # WORKER_TELEMETRY_FLUSH_TIMEOUT given to the container
METRICS_DIR = "/var/run/worker-metrics"
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "cpp", "tcc", "ld", "as", "make")


def hardened_run_args(redis_url: str, *, metrics_port: int, otlp_port: int) -> list[str]:
    """`docker run` options matching the chart's securityContext and volumes."""
    return [
        "--read-only",
        "--user", f"{UID}:{UID}",
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,size=64m",
        "--tmpfs", f"{METRICS_DIR}:rw,noexec,nosuid,nodev,size=64m,uid={UID},gid={UID},mode=0700",
        "--network", "host",
        "-e", f"REDIS_URL={redis_url}",
        "-e", f"PROMETHEUS_MULTIPROC_DIR={METRICS_DIR}",
        "-e", "METRICS_HOST=127.0.0.1",
        "-e", f"METRICS_PORT={metrics_port}",
        "-e", "WORKER_PROCESSES=1",
        "-e", "WORKER_THREADS=2",
        "-e", f"WORKER_SHUTDOWN_TIMEOUT={SHUTDOWN_TIMEOUT}",
        "-e", f"WORKER_TELEMETRY_FLUSH_TIMEOUT={FLUSH_TIMEOUT}",
        # A collector address where nothing listens: a dead collector must not matter.
        "-e", f"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{otlp_port}",
        "-e", "LOG_FORMAT=json",
    ]  # fmt: skip


def http_get(url: str, timeout: float = 5) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode(errors="replace")


def container_logs(name: str) -> str:
    result = docker("logs", name, check=False)
    return result.stdout + result.stderr


# --- Build --------------------------------------------------------------------------------------


def test_build_context_holds_only_the_package_and_its_locks(docker_engine: str) -> None:
    """.dockerignore lets only what the build reads into the context (no tests, charts, caches, .git)."""
    client, env = buildkit_cli()
    out = ROOT / ".state" / "image-context-test"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    result = subprocess.run(
        [*client, "build", "--progress", "plain", "--output", f"type=local,dest={out}", "-f", "-", "."],
        input="FROM scratch\nCOPY . /\n",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    try:
        files = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    finally:
        subprocess.run(["rm", "-rf", str(out)], check=True)
    assert "pyproject.toml" in files
    assert "requirements/runtime.txt" in files
    assert "requirements/build.txt" in files
    assert any(name.startswith("worker_app/") for name in files)
    assert "dramatiq_otlp_middleware.py" in files, "the setup guide's alias module ships in the image"
    allowed = re.compile(
        r"^(pyproject\.toml|README\.md|requirements/(runtime|build)\.txt|worker_app/.+|dramatiq_otlp_middleware\.py)$"
    )
    unexpected = [name for name in files if not allowed.match(name)]
    assert unexpected == [], f"files in the build context that the build does not need: {unexpected}"
    caches = [name for name in files if "__pycache__" in name or name.endswith((".pyc", ".pyo"))]
    assert caches == [], caches


def test_image_builds_cold_and_rebuilds_from_cache(built_image: BuiltImage) -> None:
    """Cold build (no layer cache) then warm: every step of the warm build comes from the cache."""
    cold, warm = built_image.cold, built_image.warm
    assert cold.image_id.startswith("sha256:")
    assert built_image.layers["cold"] == built_image.layers["warm"], "warm rebuild changed a layer"
    warm_steps, warm_cached = _steps(warm.log)
    assert len(warm_steps) >= 4, f"the warm build log shows too few RUN/COPY steps:\n{warm.log}"
    assert warm_steps <= warm_cached, f"warm build re-ran steps:\n{warm.log}"
    assert float(warm.info["build_seconds"]) < 60
    if os.environ.get("IMAGE_TEST_COLD", "1") != "0":
        cold_steps, cold_cached = _steps(cold.log)
        assert len(cold_steps) == len(warm_steps)
        assert not cold_steps & cold_cached, f"the cold build reused cached steps:\n{cold.log}"


def _steps(log: str) -> tuple[set[str], set[str]]:
    """Numbers of the RUN/COPY steps in a plain BuildKit log, and of the steps reported CACHED."""
    steps = set(re.findall(r"^#(\d+) \[(?:build|runtime) +\d+/\d+\] (?:RUN|COPY) ", log, re.MULTILINE))
    cached = set(re.findall(r"^#(\d+) CACHED$", log, re.MULTILINE))
    return steps, cached


def test_image_config(built_image: BuiltImage) -> None:
    config = json.loads(docker("image", "inspect", built_image.tag).stdout)[0]["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["python", "-m", "worker_app"]
    assert not config.get("Cmd")
    assert config.get("Healthcheck") is None
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    labels = config["Labels"]
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert version is not None
    assert labels["org.opencontainers.image.version"] == version.group(1)
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.revision"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", labels["org.opencontainers.image.created"])
    assert labels["org.opencontainers.image.base.name"] == built_image.base_image


def test_added_size_is_small(built_image: BuiltImage) -> None:
    """Issue target: what our layers add over the base stays under 60 MB."""
    added = int(built_image.warm.info["added_size_bytes"])
    history = docker("history", "--format", "{{.Size}}\t{{.CreatedBy}}", built_image.tag).stdout
    assert 0 < added < 60_000_000, f"our layers add {added} bytes:\n{history}"


# --- What is (not) in the image ------------------------------------------------------------------


def test_runs_as_non_root_without_pip_or_compiler(built_image: BuiltImage) -> None:
    result = docker("run", "--rm", "--read-only", "--entrypoint", "id", built_image.tag)
    assert result.stdout.startswith(f"uid={UID}(worker) gid={UID}(worker)"), result.stdout
    assert "uid=0" not in result.stdout
    script = (
        "import importlib.util, shutil, sys\n"
        f"tools = {(*COMPILERS, 'pip', 'pip3')!r}\n"
        "print(sys.executable)\n"
        "print([t for t in tools if shutil.which(t)])\n"
        "print(importlib.util.find_spec('pip') is not None)\n"
        "import worker_app; print(worker_app.__file__)\n"
    )
    result = docker("run", "--rm", "--read-only", "--entrypoint", "python", built_image.tag, "-c", script)
    executable, found, has_pip, package = result.stdout.splitlines()
    assert executable == "/opt/venv/bin/python"
    assert found == "[]", f"on PATH in the image: {found}"
    assert has_pip == "False"
    assert package.startswith("/opt/venv/lib/")


def test_bytecode_is_precompiled(built_image: BuiltImage) -> None:
    """Every module of the venv has its .pyc, so nothing needs writing on a read-only root."""
    script = (
        "import pathlib, importlib.util\n"
        "missing = [str(p) for p in pathlib.Path('/opt/venv/lib').rglob('*.py')\n"
        "           if not pathlib.Path(importlib.util.cache_from_source(str(p))).exists()]\n"
        "print(len(missing), missing[:5])\n"
    )
    result = docker("run", "--rm", "--read-only", "--entrypoint", "python", built_image.tag, "-c", script)
    assert result.stdout.startswith("0 "), result.stdout


def _secret_markers() -> list[str]:
    """Strings that would show a build secret leaked: the CA bundle's path and the env that used it."""
    markers = ["PIP_CERT", "ca_bundle", "/run/secrets", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"]
    for variable in ("PIP_CERT", "SSL_CERT_FILE", "BUILD_CA_BUNDLE"):
        value = os.environ.get(variable)
        if value:
            markers.append(value)
    return markers


def _private_ca_fingerprints(image_bundle: str) -> list[bytes]:
    """Base64 lines of the certificates in this machine's CA bundle that Debian's bundle lacks."""
    host_bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if not host_bundle or not Path(host_bundle).is_file():
        return []
    pem = re.compile(r"-----BEGIN CERTIFICATE-----\n(.+?)-----END CERTIFICATE-----", re.DOTALL)
    image_certs = {block.replace("\n", "") for block in pem.findall(image_bundle)}
    host_certs = pem.findall(Path(host_bundle).read_text())
    extra = [block for block in host_certs if block.replace("\n", "") not in image_certs]
    # A line from the middle of each extra certificate identifies it in any file.
    return [block.splitlines()[len(block.splitlines()) // 2].encode() for block in extra]


def test_no_compiler_and_no_secret_in_history_or_filesystem(built_image: BuiltImage) -> None:
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", built_image.tag).stdout
    inspect = docker("image", "inspect", built_image.tag).stdout
    for marker in _secret_markers():
        assert marker not in history, f"{marker!r} in the image history:\n{history}"
        assert marker not in inspect, f"{marker!r} in the image config"
    for word in ("gcc", "build-essential", "/opt/buildtools", "--mount="):
        assert word not in history, f"{word!r} in the image history:\n{history}"

    container = docker("create", built_image.tag).stdout.strip()
    try:
        exported = subprocess.run(
            [docker_cli(), "export", container], capture_output=True, check=True, timeout=300
        ).stdout
    finally:
        docker("rm", container, check=False)
    members: dict[str, bytes] = {}
    names: list[str] = []
    programs: list[str] = []  # files and symlinks (a directory such as usr/share/gcc is no compiler)
    with tarfile.open(fileobj=io.BytesIO(exported)) as archive:
        for member in archive:
            names.append(member.name)
            if member.isfile() or member.issym():
                programs.append(member.name)
            if member.isfile() and member.size <= 8_000_000:
                extracted = archive.extractfile(member)
                if extracted is not None:
                    members[member.name] = extracted.read()
    basenames = {name.rsplit("/", 1)[-1] for name in programs}
    compilers = sorted(basenames & {"gcc", "cc", "cc1", "g++", "c++", "clang", "tcc"})
    assert compilers == [], f"compilers in the image filesystem: {compilers}"
    assert not any(re.match(r"^(opt/buildtools|src|run/secrets|root/\.cache)(/|$)", name) for name in names)
    venv = [name for name in names if name.startswith("opt/venv/")]
    assert not any("/site-packages/pip/" in name or name.startswith("opt/venv/bin/pip") for name in venv)
    for name, content in members.items():
        for marker in ("PIP_CERT=", "ca_bundle"):
            assert marker.encode() not in content, f"{marker!r} in {name}"
    image_bundle = members.get("etc/ssl/certs/ca-certificates.crt", b"").decode(errors="replace")
    private = _private_ca_fingerprints(image_bundle)
    for name, content in members.items():
        for line in private:
            assert line not in content, f"this machine's private CA certificate is in {name}"
    MEASUREMENTS["private CA certificates checked absent"] = str(len(private))


def test_invalid_configuration_exits_2(built_image: BuiltImage) -> None:
    """Contract: exit status 2 with one line on stderr naming the variable."""
    result = docker(
        "run", "--rm", "--read-only", "--cap-drop", "ALL", "-e", "REDIS_PORT=not-a-port",
        built_image.tag, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "REDIS_PORT" in result.stderr


# --- Running ------------------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    metrics_url: str
    redis: RedisServer
    run_args: list[str]
    image: str


@pytest.fixture(scope="module")
def worker(built_image: BuiltImage, redis_server: RedisServer) -> Iterator[Worker]:
    name = f"wp-worker-test-{uuid.uuid4().hex[:8]}"
    metrics_port = free_port()
    args = hardened_run_args(redis_server.url, metrics_port=metrics_port, otlp_port=free_port())
    started = time.monotonic()
    docker("run", "-d", "--name", name, *args, built_image.tag)
    url = f"http://127.0.0.1:{metrics_port}"
    try:
        deadline = started + 90
        while True:
            try:
                status = http_get(f"{url}/healthz", timeout=2)[0]
            except OSError:
                status = 0
            if status == 200:
                break
            state = docker("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            if state != "running" or time.monotonic() > deadline:
                pytest.fail(f"worker not ready (state {state}, /healthz {status}):\n{container_logs(name)}")
            time.sleep(0.1)
        MEASUREMENTS["container start-to-ready (/healthz 200)"] = f"{time.monotonic() - started:.2f} s"
        yield Worker(name=name, metrics_url=url, redis=redis_server, run_args=args, image=built_image.tag)
    finally:
        docker("rm", "-f", name, check=False)


def test_inside_the_running_container_the_user_is_not_root(worker: Worker) -> None:
    assert docker("exec", worker.name, "id", "-u").stdout.strip() == UID
    assert docker("exec", worker.name, "id", "-g").stdout.strip() == UID
    config = json.loads(docker("inspect", worker.name).stdout)[0]["HostConfig"]
    assert config["ReadonlyRootfs"] is True
    assert config["CapDrop"] == ["ALL"]


@dataclass
class ProbeRun:
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def probed(worker: Worker) -> ProbeRun:
    """`python -m worker_app.probe` from a second hardened container: enqueues ping, waits for it."""
    result = docker(
        "run", "--rm", *worker.run_args, "--entrypoint", "python", worker.image,
        "-m", "worker_app.probe", "--timeout", "30",
        check=False, timeout=90,
    )  # fmt: skip
    return ProbeRun(result=result)


@pytest.fixture(scope="module")
def dead_lettered(worker: Worker) -> Message[object]:
    """A `clone_wordpress` message with an invalid source URL (ftp), sent from the host."""
    broker = RedisBroker(url=worker.redis.url)
    try:
        message: Message[object] = broker.enqueue(
            Message(
                queue_name="clone-queue",
                actor_name="clone_wordpress",
                args=("ftp://source.example", "https://target.example", {}),
                kwargs={},
                options={},
            )
        )
    finally:
        broker.close()
    # Dramatiq keys Redis entries by a per-enqueue id (retries keep the message id, not this one).
    redis_id = message.options["redis_message_id"]
    client = redis.Redis.from_url(worker.redis.url)
    deadline = time.monotonic() + 60
    while client.zscore("dramatiq:clone-queue.XQ", redis_id) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"message not dead-lettered within 60 s:\n{container_logs(worker.name)}")
        time.sleep(0.2)
    return message


def test_probe_processes_a_ping_job(worker: Worker, probed: ProbeRun) -> None:
    result = probed.result
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{container_logs(worker.name)}"
    assert "processed" in result.stdout


def test_invalid_clone_job_is_dead_lettered_with_the_validation_error(
    worker: Worker, dead_lettered: Message[object]
) -> None:
    message = dead_lettered
    client = redis.Redis.from_url(worker.redis.url)
    stored = client.hget("dramatiq:clone-queue.XQ.msgs", message.options["redis_message_id"])
    assert stored is not None
    assert json.loads(stored)["message_id"] == message.message_id
    assert client.llen("dramatiq:clone-queue") == 0

    # The worker's JSON log line for this message carries the validation error.
    deadline = time.monotonic() + 10
    while True:
        records = []
        for line in container_logs(worker.name).splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("message_id") == message.message_id:
                records.append(record)
        matching = [r for r in records if "scheme must be http or https" in json.dumps(r)]
        if matching or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert matching, f"no JSON log line with the validation error for {message.message_id}: {records}"
    assert any("InvalidJobArguments" in json.dumps(r) for r in records), records


def test_metrics_and_health_are_served(worker: Worker, probed: ProbeRun, dead_lettered: Message[object]) -> None:
    status, _, body = http_get(f"{worker.metrics_url}/healthz")
    assert status == 200, body
    status, content_type, body = http_get(f"{worker.metrics_url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }
    names = {name for name, _ in samples}
    assert "dramatiq_worker_processes" in names, sorted(names)
    assert max(v for (n, _), v in samples.items() if n == "dramatiq_worker_processes") >= 1
    # The ping and the dead-lettered clone, counted across the worker processes (multiprocess mode
    # writes to the tmpfs mount; the root filesystem is read-only).
    pings = _values(samples, "dramatiq_messages_processed_total", actor="ping")
    assert pings, sorted(names)
    assert sum(pings) >= 1
    dead = _values(samples, "dramatiq_messages_dead_lettered_total", actor="clone_wordpress")
    assert sum(dead) >= 1, sorted(names)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _values(samples: Samples, name: str, **labels: str) -> list[float]:
    return [
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and set(labels.items()) <= set(sample_labels)
    ]


def test_docker_stop_ends_the_worker_within_the_shutdown_bound(worker: Worker) -> None:
    """SIGTERM reaches the worker (exec-form entrypoint, no shell) and it exits cleanly in time."""
    bound = SHUTDOWN_TIMEOUT + FLUSH_TIMEOUT
    started = time.monotonic()
    docker("stop", "--time", str(bound + 20), worker.name, timeout=bound + 60)
    took = time.monotonic() - started
    MEASUREMENTS["docker stop (idle worker)"] = f"{took:.2f} s"
    state = json.loads(docker("inspect", worker.name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, f"exit {state['ExitCode']}:\n{container_logs(worker.name)}"
    assert not state["OOMKilled"]
    assert took < bound + 3, f"docker stop took {took:.1f} s (bound {bound} s)"
