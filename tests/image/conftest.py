"""Fixtures for the image tests: a Docker engine, the worker image built by ci/build-image.sh (cold,
then warm), a real redis-server on a free loopback port, and a table of measurements printed at
the end of the run (test_node_images.py adds the local node's images to it).

Redis is the session-wide real `redis-server` of tests/conftest.py. The tests are skipped only when no Docker engine answers and none can be started here (no
dockerd, or not root). Everything else that goes wrong is a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest

from wp_devsupport.image import MEASUREMENTS, TEST_IMAGE, BuiltImage, docker, docker_cli, mb, run_build_script


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
    terminalreporter.section("image measurements")
    width = max(len(key) for key in MEASUREMENTS)
    for key, value in MEASUREMENTS.items():
        terminalreporter.write_line(f"{key:<{width}}  {value}")
