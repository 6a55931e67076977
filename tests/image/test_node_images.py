"""The local node's own images (ci/node/images.sh), built here for real and run the way the node runs them,
without the node: the pause binary (static, exits 0 on SIGTERM/SIGINT, reaps the orphans of a shared
PID namespace), the embedded Redis under the chart's own command, user and read-only root, the
collector on the e2e configuration, and the import into a standalone containerd of our own.

Containers run with `--network none`, or on an `--internal` network the host reaches by the
container's address: nothing here contacts an outside address.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from wp_devsupport.chart import (
    KUBE_VERSIONS,
    container,
    find,
    load_documents,
    pod_spec,
    render_chart_text,
    root_chart_copy,
)
from wp_devsupport.ci_files import KIND_VALUES, collector_config
from wp_devsupport.image import MEASUREMENTS, docker, mb, parse_key_values
from wp_devsupport.node_images import (
    IMAGES,
    IMAGES_SCRIPT,
    NODE_VALUES,
    OTELCOL_IMAGE,
    PAUSE_IMAGE,
    REDIS_IMAGE,
    collector_manifest,
    cri_image_status,
    normalized,
    throwaway_containerd,
)
from wp_devsupport.repo import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

NEW_IMAGES = ("pause", "redis", "otelcol")
PASSWORD = "node-image-test-password"


def images_script(*args: str, env: dict[str, str] | None = None, timeout: float = 1800) -> dict[str, str]:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(IMAGES_SCRIPT), *args],
        cwd=REPO,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(f"ci/node/images.sh {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    info = parse_key_values(result.stdout)
    info["wall_seconds"] = f"{time.monotonic() - started:.1f}"
    return info


@pytest.fixture(scope="module")
def node_images(docker_engine: str) -> dict[str, str]:
    """pause, redis and otelcol built cold (NO_CACHE=1; IMAGE_TEST_COLD=0 skips that), then warm."""
    if os.environ.get("IMAGE_TEST_COLD", "1") != "0":
        cold = images_script("build", *NEW_IMAGES, env={"NO_CACHE": "1"})
        for name in NEW_IMAGES:
            MEASUREMENTS[f"node {name}: cold build"] = f"{cold[f'{name}_build_seconds']} s"
        # The images the cold build replaced, now untagged (they are only ours: labelled by our Dockerfiles).
        for name in NEW_IMAGES:
            label = f"org.opencontainers.image.title=wp-k8s-service {name}"
            docker("image", "prune", "--force", "--filter", f"label={label}")
    warm = images_script("build", *NEW_IMAGES)
    for name in NEW_IMAGES:
        MEASUREMENTS[f"node {name}: warm build"] = f"{warm[f'{name}_build_seconds']} s"
        MEASUREMENTS[f"node {name}: size"] = mb(int(warm[f"{name}_size_bytes"]))
        assert warm[f"{name}_changed"] == "false", f"a second build of {name} must come from the cache"
    return warm


def container_name(prefix: str) -> str:
    return f"wp-node-img-{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cleanup() -> Iterator[list[str]]:
    """Names of containers (and `net:`-prefixed networks) to remove after the test."""
    names: list[str] = []
    yield names
    for name in reversed(names):
        if name.startswith("net:"):
            docker("network", "rm", name[4:], check=False)
        else:
            docker("rm", "-f", "-v", name, check=False)


# ----------------------------------------------------------------------------- pause
def image_files(reference: str) -> dict[str, bytes]:
    """The files of an image's layers (`docker save`), by path."""
    archive = subprocess.run(
        [docker_cli_path(), "save", reference], capture_output=True, check=True, timeout=120
    ).stdout
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        manifest = json.loads(outer.extractfile("manifest.json").read())  # type: ignore[union-attr]
        for layer_path in manifest[0]["Layers"]:
            layer = outer.extractfile(layer_path)
            assert layer is not None
            with tarfile.open(fileobj=io.BytesIO(layer.read())) as inner:
                for member in inner.getmembers():
                    if member.isfile():
                        files[member.name.removeprefix("./")] = inner.extractfile(member).read()  # type: ignore[union-attr]
    return files


def docker_cli_path() -> str:
    return shutil.which("docker") or "/usr/bin/docker"


def elf_segment_types(binary: bytes) -> set[int]:
    """The program header types of a 64-bit little-endian ELF executable."""
    assert binary[:4] == b"\x7fELF", "not an ELF file"
    assert binary[4] == 2, "not ELF64"
    assert binary[5] == 1, "not little-endian"
    e_type, _machine = struct.unpack_from("<HH", binary, 16)
    assert e_type == 2, "not an executable (ET_EXEC): a static-pie or shared object"
    phoff = struct.unpack_from("<Q", binary, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", binary, 54)
    return {struct.unpack_from("<I", binary, phoff + i * phentsize)[0] for i in range(phnum)}


def test_pause_image_holds_only_a_static_binary(node_images: dict[str, str]) -> None:
    files = image_files(PAUSE_IMAGE)
    assert list(files) == ["pause"], files.keys()
    segments = elf_segment_types(files["pause"])
    pt_dynamic, pt_interp = 2, 3
    assert pt_interp not in segments, "a program interpreter: dynamically linked"
    assert pt_dynamic not in segments, "a dynamic section: needs shared libraries"
    config = json.loads(docker("image", "inspect", PAUSE_IMAGE).stdout)[0]["Config"]
    assert config["Entrypoint"] == ["/pause"]
    assert config["User"] == "65535:65535"


@pytest.mark.parametrize("signal_name", ["TERM", "INT"])
def test_pause_exits_0_at_once_on_sigterm_and_sigint(
    node_images: dict[str, str], cleanup: list[str], signal_name: str
) -> None:
    name = container_name("pause")
    cleanup.append(name)
    docker("run", "-d", "--name", name, "--network", "none", "--cap-drop", "ALL", "--read-only", PAUSE_IMAGE)
    time.sleep(0.3)
    assert json.loads(docker("inspect", name).stdout)[0]["State"]["Running"]
    started = time.monotonic()
    docker("kill", "--signal", signal_name, name)
    exit_code = docker("wait", name, timeout=10).stdout.strip()
    elapsed = time.monotonic() - started
    assert exit_code == "0"
    assert elapsed < 3, f"pause took {elapsed:.1f} s to exit on SIG{signal_name}"
    MEASUREMENTS[f"node pause: exit on SIG{signal_name}"] = f"{elapsed:.2f} s (docker kill to docker wait)"


# Run in a second container that shares the pause container's PID namespace (as a pod's containers do):
# `sleep` is orphaned (its parent shell exits), so the kernel hands it to the namespace's PID 1, pause;
# after SIGKILL it is a zombie until its parent, pause, reaps it.
ORPHAN_SCRIPT = r"""
pid=$(sh -c 'sleep 300 >/dev/null 2>&1 & echo $!')
echo "pid1=$(tr '\0' ' ' </proc/1/cmdline)"
echo "ppid=$(awk '/^PPid:/ {print $2}' /proc/$pid/status)"
kill -9 "$pid"
i=0
while [ -e "/proc/$pid" ] && [ $i -lt 50 ]; do
  state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
  i=$((i + 1)); sleep 0.1
done
if [ -e "/proc/$pid" ]; then echo "left=$state"; else echo "reaped_after_tenths=$i"; fi
"""


def test_pause_reaps_the_orphans_of_its_pid_namespace(node_images: dict[str, str], cleanup: list[str]) -> None:
    name = container_name("pause")
    cleanup.append(name)
    docker("run", "-d", "--name", name, "--network", "none", PAUSE_IMAGE)
    result = docker(
        "run", "--rm", "--network", "none", "--pid", f"container:{name}", "--entrypoint", "sh",
        REDIS_IMAGE, "-c", ORPHAN_SCRIPT,
        timeout=60,
    )  # fmt: skip
    report = parse_key_values(result.stdout)
    assert report["pid1"].strip() == "/pause", result.stdout
    assert report["ppid"] == "1", f"the orphan was not reparented to pause: {result.stdout}"
    assert "left" not in report, f"the killed orphan stayed a zombie of pause: {result.stdout}"
    assert "reaped_after_tenths" in report


# ----------------------------------------------------------------------------- redis
def rendered_redis_container() -> dict[str, Any]:
    """The embedded Redis container as the chart renders it with the node's values."""
    objects = load_documents(
        render_chart_text(
            helm="helm",
            kube_version=KUBE_VERSIONS[-1],
            chart=root_chart_copy(),
            values_files=[KIND_VALUES, NODE_VALUES],
            api_versions=("monitoring.coreos.com/v1",),
            release="wp-k8s-service",
            namespace="wp-k8s-service",
        )
    )
    deployment = find(objects, "Deployment", "wp-k8s-service-redis")
    spec = pod_spec(deployment)
    redis = container(spec, "redis")
    redis["podSecurityContext"] = spec["securityContext"]
    return redis


def test_redis_runs_the_charts_command_hardened_and_answers_with_auth(
    node_images: dict[str, str], cleanup: list[str]
) -> None:
    redis = rendered_redis_container()
    assert redis["image"] == REDIS_IMAGE
    uid = redis["podSecurityContext"]["runAsUser"]
    gid = redis["podSecurityContext"]["runAsGroup"]
    assert redis["securityContext"]["readOnlyRootFilesystem"] is True
    env_names = [e["name"] for e in redis["env"]]
    assert env_names == ["REDIS_PASSWORD", "REDISCLI_AUTH"], "both from the chart's Secret"
    name = container_name("redis")
    cleanup.append(name)
    # The pod as Kubernetes runs it: the chart's UID/GID, read-only root, no capabilities, the two
    # emptyDir volumes (fsGroup 999: writable by the group), the Secret's value in both variables.
    docker(
        "run", "-d", "--name", name, "--network", "none",
        "--user", f"{uid}:{gid}", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--tmpfs", f"/data:rw,nosuid,nodev,size=64m,uid={uid},gid={gid},mode=0770",
        "--tmpfs", f"/tmp:rw,nosuid,nodev,size=64m,uid={uid},gid={gid},mode=0770",
        "-e", f"REDIS_PASSWORD={PASSWORD}", "-e", f"REDISCLI_AUTH={PASSWORD}",
        "--entrypoint", redis["command"][0],
        REDIS_IMAGE, *redis["command"][1:], *redis["args"],
    )  # fmt: skip
    probe = redis["readinessProbe"]["exec"]["command"]
    deadline = time.monotonic() + 15
    while docker("exec", name, *probe, check=False).returncode != 0:
        state = json.loads(docker("inspect", name).stdout)[0]["State"]
        if not state["Running"] or time.monotonic() > deadline:
            pytest.fail(f"redis never became ready: {state}\n{docker('logs', name, check=False).stderr}")
        time.sleep(0.2)
    status = docker("exec", name, "cat", "/proc/1/status").stdout
    assert f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}" in status
    cmdline = docker("exec", name, "cat", "/proc/1/cmdline").stdout
    comm = docker("exec", name, "cat", "/proc/1/comm").stdout.strip()
    assert comm == "redis-server", "exec: redis-server is PID 1 (gets SIGTERM)"
    assert PASSWORD not in cmdline, "the password must not be on a command line"
    # Only with the password: without it NOAUTH, with a wrong one WRONGPASS.
    assert docker("exec", "-e", "REDISCLI_AUTH=", name, "redis-cli", "ping").stdout.startswith("NOAUTH")
    wrong = docker("exec", "-e", "REDISCLI_AUTH=wrong", name, "redis-cli", "ping")
    assert "WRONGPASS" in wrong.stderr
    assert wrong.stdout.startswith("NOAUTH")
    assert docker("exec", name, "redis-cli", "set", "k", "v").stdout.strip() == "OK"
    assert docker("exec", name, "redis-cli", "config", "get", "dir").stdout.split() == ["dir", "/data"]
    # Nothing else is writable.
    assert docker("exec", name, "touch", "/etc/x", check=False).returncode != 0
    started = time.monotonic()
    docker("stop", "-t", "10", name, timeout=30)
    elapsed = time.monotonic() - started
    assert json.loads(docker("inspect", name).stdout)[0]["State"]["ExitCode"] == 0
    assert elapsed < 5, f"redis took {elapsed:.1f} s to stop on SIGTERM"
    MEASUREMENTS["node redis: stop on SIGTERM"] = f"{elapsed:.2f} s"


# ----------------------------------------------------------------------------- otelcol
def test_collector_runs_the_e2e_config_and_accepts_otlp(
    node_images: dict[str, str], cleanup: list[str], tmp_path: Path
) -> None:
    manifest = [doc for doc in yaml.safe_load_all(collector_manifest()) if doc]
    spec = pod_spec(find(manifest, "Deployment"))
    collector = container(spec, "otel-collector")
    assert collector["image"] == OTELCOL_IMAGE
    mount = next(m for m in collector["volumeMounts"] if m["name"] == "config")["mountPath"]
    config_dir = Path(tempfile.mkdtemp(prefix="wp-node-otelcol-"))
    try:
        config_dir.chmod(0o755)
        (config_dir / "config.yaml").write_text(collector_config())
        (config_dir / "config.yaml").chmod(0o644)
        network = container_name("net")
        docker("network", "create", "--internal", network)
        cleanup.append(f"net:{network}")
        name = container_name("otelcol")
        cleanup.append(name)
        uid = spec["securityContext"]["runAsUser"]
        gid = spec["securityContext"]["runAsGroup"]
        docker(
            "run", "-d", "--name", name, "--network", network,
            "--user", f"{uid}:{gid}", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-v", f"{config_dir}:{mount}:ro",
            OTELCOL_IMAGE, *collector["args"],
        )  # fmt: skip
        address = json.loads(docker("inspect", name).stdout)[0]["NetworkSettings"]["Networks"][network]["IPAddress"]
        span = {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "node-image-test"}}]},
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                    "spanId": "eee19b7ec3c1b174",
                                    "name": "node-image-span",
                                    "kind": 1,
                                    "startTimeUnixNano": "1700000000000000000",
                                    "endTimeUnixNano": "1700000001000000000",
                                }
                            ]
                        }
                    ],
                }
            ]
        }
        request = urllib.request.Request(
            f"http://{address}:4318/v1/traces",
            data=json.dumps(span).encode(),
            headers={"Content-Type": "application/json"},
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                state = json.loads(docker("inspect", name).stdout)[0]["State"]
                if not state["Running"] or time.monotonic() > deadline:
                    pytest.fail(f"collector never accepted OTLP: {state}\n{docker('logs', name, check=False).stderr}")
                time.sleep(0.3)
        deadline = time.monotonic() + 10
        while "node-image-span" not in (logs := docker("logs", name).stderr + docker("logs", name).stdout):
            assert time.monotonic() < deadline, f"the debug exporter never printed the span:\n{logs[-3000:]}"
            time.sleep(0.3)
        processes = docker("top", name, "-o", "pid,uid").stdout.splitlines()[1:]
        assert [line.split()[1] for line in processes] == [str(uid)], processes
    finally:
        shutil.rmtree(config_dir, ignore_errors=True)


# ----------------------------------------------------------------------------- import into containerd
def test_import_into_a_standalone_containerd_is_what_cri_resolves(node_images: dict[str, str]) -> None:
    """Import into a containerd 1.6 of our own with its CRI plugin, then ask the plugin what the kubelet
    asks (ImageStatus) for the references the manifests use."""
    if os.geteuid() != 0:
        pytest.skip("starting a containerd of our own needs root")
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("containerd/ctr are not installed (Debian package containerd)")
    names = ("worker", *NEW_IMAGES)
    images_script("build", "worker")
    # A short path: unix socket addresses are limited to 108 bytes.
    directory = Path(tempfile.mkdtemp(prefix="wp-ctd-", dir="/var/tmp"))
    try:
        with throwaway_containerd(directory, cri=True) as containerd:
            assert cri_image_status(containerd.address, IMAGES["worker"]) is None, "an empty containerd"
            imported = images_script("import", "--address", str(containerd.address), *names)
            MEASUREMENTS["node import (worker pause redis otelcol)"] = f"{imported['import_seconds']} s"
            # The CRI plugin adds a `sha256:<image id>` reference of its own for every image it sees.
            listed = {
                ref for ref in containerd.ctr("images", "ls", "-q").stdout.split() if not ref.startswith("sha256:")
            }
            assert listed == {normalized(IMAGES[name]) for name in names}
            assert "docker.io/library/wp-k8s-service-worker:kind" in listed
            # The kubelet's question for a pod with `image: wp-k8s-service-worker:kind`, pullPolicy Never.
            for name in names:
                status = cri_image_status(containerd.address, IMAGES[name])
                assert status is not None, f"CRI does not resolve {IMAGES[name]}: ErrImageNeverPull on the node"
                assert status["repo_tags"] == [normalized(IMAGES[name])]
            assert cri_image_status(containerd.address, "wp-k8s-service-worker:other") is None
            # Unpacked for the default snapshotter (overlayfs, the CRI plugin's): the sandbox image runs.
            if shutil.which("runc") is not None:
                task = f"wp-pause-{uuid.uuid4().hex[:6]}"
                run = containerd.ctr("run", "-d", "--null-io", PAUSE_IMAGE, task)
                assert run.returncode == 0, run.stderr
                assert " RUNNING" in containerd.ctr("tasks", "ls").stdout
                containerd.ctr("tasks", "kill", "-s", "SIGTERM", task)
                deadline = time.monotonic() + 5
                while "STOPPED" not in containerd.ctr("tasks", "ls").stdout:
                    assert time.monotonic() < deadline, containerd.ctr("tasks", "ls").stdout
                    time.sleep(0.1)
                containerd.ctr("tasks", "delete", task)
                containerd.ctr("containers", "delete", task)
            # A second import of the same images changes nothing.
            images_script("import", "--address", str(containerd.address), "pause")
            assert {
                ref for ref in containerd.ctr("images", "ls", "-q").stdout.split() if not ref.startswith("sha256:")
            } == listed
    finally:
        shutil.rmtree(directory, ignore_errors=True)
