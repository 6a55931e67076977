"""Fixtures for the worker image tests: a Docker engine, the image built by ci/build-image.sh (cold,
then warm), a real redis-server on a free loopback port, and a table of measurements printed at
the end of the run.

Redis is the session-wide real `redis-server` of tests/conftest.py. The tests are skipped only when no Docker engine answers and none can be started here (no
dockerd, or not root). Everything else that goes wrong is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "ci" / "build-image.sh"
TEST_IMAGE = os.environ.get("IMAGE_TEST_TAG", "wp-k8s-service-worker:test")

# What the tests measured, printed by pytest_terminal_summary below.
MEASUREMENTS: dict[str, str] = {}


def docker_cli() -> str:
    """Any docker client works for run/inspect/stop (the 28.x one negotiates down to 20.10)."""
    return shutil.which("docker") or "/usr/bin/docker"


def buildkit_cli() -> tuple[list[str], dict[str, str]]:
    """A client that builds with BuildKit: the buildx plugin, or Debian's 20.10 docker.io client."""
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    for candidate in (shutil.which("docker"), "/usr/bin/docker"):
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        if subprocess.run([candidate, "buildx", "version"], capture_output=True, check=False).returncode == 0:
            return [candidate], env
        version = subprocess.run(
            [candidate, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        major = version.split(".", 1)[0]
        if major.isdigit() and 18 <= int(major) <= 22:
            return [candidate], env
    pytest.fail("no docker client with BuildKit (buildx plugin, or Debian's docker.io client)")


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([docker_cli(), *args], capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result


def parse_key_values(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            pairs[key] = value
    return pairs


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@dataclass
class Build:
    """One run of ci/build-image.sh."""

    info: dict[str, str]
    wall_seconds: float
    log: str

    @property
    def image_id(self) -> str:
        return self.info["image_id"]


@dataclass
class BuiltImage:
    tag: str
    cold: Build
    warm: Build
    base_image: str
    layers: dict[str, list[str]] = field(default_factory=dict)


def run_build_script(*extra: str) -> Build:
    env = dict(os.environ, IMAGE=TEST_IMAGE)
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=3000,
    )
    wall = time.monotonic() - started
    if result.returncode != 0:
        pytest.fail(f"ci/build-image.sh {' '.join(extra)} failed ({result.returncode}):\n{result.stderr}")
    log_path = ROOT / ".state" / "image-build.log"
    return Build(
        info=parse_key_values(result.stdout),
        wall_seconds=wall,
        log=log_path.read_text(errors="replace") if log_path.exists() else "",
    )


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """A Docker engine that answers; started by the build script when none does."""
    if docker("info", check=False, timeout=60).returncode == 0:
        return docker_cli()
    if shutil.which("dockerd") is None:
        pytest.skip("no Docker engine answers and dockerd is not installed (Debian package docker.io)")
    if os.geteuid() != 0:
        pytest.skip("no Docker engine answers and starting dockerd needs root")
    # The build script starts dockerd (and fails loudly if it cannot); --base-only keeps it short
    # when the base image is already there.
    run_build_script("--base-only")
    if docker("info", check=False, timeout=60).returncode != 0:
        pytest.fail("ci/build-image.sh started dockerd but the engine does not answer")
    return docker_cli()


@pytest.fixture(scope="session")
def built_image(docker_engine: str) -> BuiltImage:
    """The image built twice from the working tree: cold (no layer cache), then warm.

    IMAGE_TEST_COLD=0 skips the cold build (the first build then only reuses what is cached).
    """
    base_info = run_build_script("--base-only").info
    cold_args = ("--", "--no-cache") if os.environ.get("IMAGE_TEST_COLD", "1") != "0" else ()
    cold = run_build_script(*cold_args)
    warm = run_build_script()
    built = BuiltImage(tag=TEST_IMAGE, cold=cold, warm=warm, base_image=base_info["base_image"])
    for name, build in (("cold", cold), ("warm", warm)):
        built.layers[name] = docker(
            "image", "inspect", "--format", "{{json .RootFS.Layers}}", build.image_id
        ).stdout.split()
        MEASUREMENTS[f"build time, {name}"] = (
            f"{float(build.info['build_seconds']):.1f} s (docker build), {build.wall_seconds:.1f} s (script)"
        )
    MEASUREMENTS["base image"] = f"{built.base_image}: {mb(int(warm.info['base_size_bytes']))}"
    MEASUREMENTS["image size"] = mb(int(warm.info["image_size_bytes"]))
    MEASUREMENTS["added over the base"] = mb(int(warm.info["added_size_bytes"]))
    return built


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not MEASUREMENTS:
        return
    terminalreporter.section("worker image measurements")
    width = max(len(key) for key in MEASUREMENTS)
    for key, value in MEASUREMENTS.items():
        terminalreporter.write_line(f"{key:<{width}}  {value}")
