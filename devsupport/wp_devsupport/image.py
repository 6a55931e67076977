"""The worker image, built and inspected for real (tests/image): the Docker clients, ci/build-image.sh runs
and what they report, and the measurements printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from .repo import REPO as ROOT

BUILD_SCRIPT = ROOT / "ci" / "build-image.sh"
TEST_IMAGE = os.environ.get("IMAGE_TEST_TAG", "wp-k8s-service-worker:test")

# What the tests measured, printed by tests/image/conftest.py (pytest_terminal_summary).
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
