"""The container images of the local single-node Kubernetes (ci/node/images.sh): their references, the
names containerd stores them under, the e2e collector manifest with the local collector image, and a
throwaway containerd to import into.

The references are the same constants as in ci/node/images.sh (tests/ci/test_ci_node_files.py checks
that they agree). PAUSE_IMAGE is the node's containerd `sandbox_image`.

    python -m wp_devsupport.node_images names                  # name=reference lines
    python -m wp_devsupport.node_images collector-manifest | kubectl apply -f -
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .repo import REPO

IMAGES_SCRIPT = REPO / "ci" / "node" / "images.sh"
NODE_VALUES = REPO / "ci" / "node" / "node-values.yaml"
COLLECTOR_MANIFEST = REPO / "ci" / "kind" / "otel-collector.yaml"

#: The worker and test API images: the kind job's tags (ci/kind/kind-e2e.sh), pullPolicy Never.
WORKER_IMAGE = "wp-k8s-service-worker:kind"
API_IMAGE = "wp-k8s-service-api:kind"
#: The pod sandbox image (ci/node/pause/pause.c): the node's containerd `sandbox_image`.
PAUSE_IMAGE = "localhost/wp-k8s-service/pause:3.10"
#: The embedded Redis (ci/node/redis/Dockerfile), set by ci/node/node-values.yaml.
REDIS_IMAGE = "localhost/wp-k8s-service/redis:7.0-bookworm"
#: The e2e collector (bin/otelcol, ci/node/otelcol/Dockerfile), swapped in by collector_manifest().
OTELCOL_IMAGE = "localhost/wp-k8s-service/otelcol:0.161.0"

#: Every image by the name ci/node/images.sh knows it under, in its build order.
IMAGES: dict[str, str] = {
    "worker": WORKER_IMAGE,
    "api": API_IMAGE,
    "pause": PAUSE_IMAGE,
    "redis": REDIS_IMAGE,
    "otelcol": OTELCOL_IMAGE,
}

#: The namespace the CRI plugin keeps its images in.
CRI_NAMESPACE = "k8s.io"


def normalized(reference: str) -> str:
    """The name containerd's CRI plugin resolves a reference to (Docker's normalization).

    A first component without '.' or ':' that is not `localhost` is no registry: docker.io, plus
    `library/` for a one-component name; no tag means `latest`.
    """
    first, slash, _ = reference.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        path = reference if slash else f"library/{reference}"
        reference = f"docker.io/{path}"
    if "@" not in reference and ":" not in reference.rsplit("/", 1)[-1]:
        reference += ":latest"
    return reference


def collector_manifest(image: str = OTELCOL_IMAGE, source: Path = COLLECTOR_MANIFEST) -> str:
    """ci/kind/otel-collector.yaml with the collector container on IMAGE, never pulled; nothing else changes.

    The kind job applies that file as it is (the official image); the local node cannot pull it.
    """
    documents = [doc for doc in yaml.safe_load_all(source.read_text()) if doc is not None]
    swapped = 0
    for doc in documents:
        if doc.get("kind") != "Deployment":
            continue
        containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
        for container in containers:
            if container["name"] == "otel-collector":
                container["image"] = image
                container["imagePullPolicy"] = "Never"
                swapped += 1
    if swapped != 1:
        raise ValueError(f"{source} has {swapped} otel-collector containers, expected exactly one")
    return yaml.safe_dump_all(documents, sort_keys=False)


# ------------------------------------------------------------------------------ throwaway containerd
@dataclass
class Containerd:
    """A containerd of our own: root, state and sockets under one directory."""

    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> Path:
        return self.directory / "containerd.sock"

    @property
    def log(self) -> Path:
        return self.directory / "containerd.log"

    def ctr(self, *args: str, namespace: str = CRI_NAMESPACE, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ctr_binary(), "-a", str(self.address), "-n", namespace, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )


def ctr_binary() -> str:
    path = shutil.which("ctr")
    if path is None:
        raise FileNotFoundError("no ctr client (Debian package containerd)")
    return path


def containerd_config(directory: Path, *, cri: bool = False) -> str:
    """A config whose root, state and sockets are all under DIRECTORY (nothing shared with another one).

    With CRI: the plugin the kubelet talks to, answering image queries (no CNI, no pods); its streaming
    server on a port of its own choosing, sandbox_image PAUSE_IMAGE.
    """
    disabled = "" if cri else 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
    text = (
        "version = 2\n"
        f'root = "{directory}/root"\n'
        f'state = "{directory}/state"\n'
        f"{disabled}"
        f'[grpc]\n  address = "{directory}/containerd.sock"\n'
        f'[ttrpc]\n  address = "{directory}/containerd.sock.ttrpc"\n'
        f'[debug]\n  address = "{directory}/debug.sock"\n'
        '[metrics]\n  address = ""\n'
    )
    if cri:
        text += (
            '[plugins."io.containerd.grpc.v1.cri"]\n'
            f'  sandbox_image = "{PAUSE_IMAGE}"\n'
            '  stream_server_address = "127.0.0.1"\n'
            '  stream_server_port = "0"\n'
            '[plugins."io.containerd.grpc.v1.cri".cni]\n'
            f'  bin_dir = "{directory}/cni/bin"\n'
            f'  conf_dir = "{directory}/cni/net.d"\n'
        )
    return text


@contextmanager
def throwaway_containerd(directory: Path, *, cri: bool = False, startup_timeout: float = 30) -> Iterator[Containerd]:
    """Start containerd (needs root) with everything under DIRECTORY; stop it and unmount what it left."""
    binary = shutil.which("containerd")
    if binary is None:
        raise FileNotFoundError("containerd is not installed (Debian package containerd)")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.toml"
    config.write_text(containerd_config(directory, cri=cri))
    log = (directory / "containerd.log").open("wb")
    process = subprocess.Popen(
        [binary, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    daemon = Containerd(directory=directory, process=process)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"containerd exited ({process.returncode}): {daemon.log.read_text()[-2000:]}")
            if daemon.address.exists() and daemon.ctr("version", timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not answer within {startup_timeout} s")
            time.sleep(0.2)
        yield daemon
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        # Snapshot mounts an unpacked image may leave (none unless a container ran).
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            mountpoint = line.split()[1]
            if mountpoint.startswith(f"{directory}/") and os.geteuid() == 0:
                subprocess.run(["umount", "-l", mountpoint], check=False)


# ------------------------------------------------------------------------------ CRI image queries
# The kubelet asks the CRI plugin for an image by the pod's reference (ImageService/ImageStatus): that is
# where `wp-k8s-service-worker:kind` with pullPolicy Never is resolved, or fails with ErrImageNeverPull.
# Two messages are enough to ask, so they are encoded by hand (no CRI stubs in the locked requirements).


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
            yield number, value
        elif wire_type == 2:
            length, pos = _read_varint(data, pos)
            yield number, data[pos : pos + length]
            pos += length
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire_type}")


def cri_image_status(address: Path, reference: str, timeout: float = 10) -> dict[str, Any] | None:
    """The CRI plugin's answer to ImageStatus(reference): id, repo_tags, size; None when it has no such image."""
    import grpc  # type: ignore[import-untyped]  # grpcio ships no stubs; only this check needs it

    name = reference.encode()
    spec = b"\x0a" + _varint(len(name)) + name  # ImageSpec.image = 1
    request = b"\x0a" + _varint(len(spec)) + spec  # ImageStatusRequest.image = 1
    with grpc.insecure_channel(f"unix://{address}") as channel:
        call = channel.unary_unary("/runtime.v1.ImageService/ImageStatus")
        response: bytes = call(request, timeout=timeout)
    image = next((value for number, value in _fields(response) if number == 1), None)
    if not isinstance(image, bytes):
        return None
    status: dict[str, Any] = {"id": "", "repo_tags": [], "size": 0}
    for number, value in _fields(image):
        if number == 1 and isinstance(value, bytes):
            status["id"] = value.decode()
        elif number == 2 and isinstance(value, bytes):
            status["repo_tags"].append(value.decode())
        elif number == 4 and isinstance(value, int):
            status["size"] = value
    return status


def main(argv: list[str]) -> int:
    if argv == ["names"]:
        for name, reference in IMAGES.items():
            print(f"{name}={reference}")
        return 0
    if argv == ["collector-manifest"]:
        sys.stdout.write(collector_manifest())
        return 0
    print("usage: python -m wp_devsupport.node_images names | collector-manifest", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
