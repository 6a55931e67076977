"""Paths and small helpers shared by the tests of the CI files (tests/ci)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .repo import BIN, REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yaml"
KIND_DIR = REPO / "ci" / "kind"
KIND_E2E = KIND_DIR / "kind-e2e.sh"
BUILD_API_IMAGE = KIND_DIR / "build-api-image.sh"
KIND_CONFIG = KIND_DIR / "kind-config.yaml"
KIND_VALUES = KIND_DIR / "kind-values.yaml"
COLLECTOR_MANIFEST = KIND_DIR / "otel-collector.yaml"
E2E_CHECK = KIND_DIR / "e2e_check.py"
API_DIR = KIND_DIR / "api"
TOOLS_SH = REPO / "ci" / "tools.sh"
SCRIPTS = (KIND_E2E, BUILD_API_IMAGE)

#: Key of the application chart's values in the environment chart (root Chart.yaml dependency).
SUBCHART = "wp-k8s-service"


def script_setting(name: str, path: Path = KIND_E2E) -> str:
    """The value of a plain `NAME=value` (or `NAME=${NAME:-value}`) assignment in a shell script."""
    text = path.read_text()
    match = re.search(rf"^{name}=(?:\$\{{{name}:-)?([^}}\s]+)\}}?$", text, re.M)
    assert match, f"{path.name} has no {name}= line"
    return match.group(1)


def tools_version(name: str) -> str:
    """A pinned version of ci/tools.sh (`NAME_VERSION=...`)."""
    match = re.search(rf"^{name}_VERSION=(\S+)$", TOOLS_SH.read_text(), re.M)
    assert match, f"ci/tools.sh pins no {name}_VERSION"
    return match.group(1)


def shellcheck() -> str:
    path = shutil.which("shellcheck")
    if path is None:
        pytest.fail("shellcheck is not installed: run `make services` (Debian package shellcheck)")
    return path


def collector_objects() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(COLLECTOR_MANIFEST.read_text()) if doc]


def collector_config() -> str:
    config_maps = [o for o in collector_objects() if o["kind"] == "ConfigMap"]
    assert len(config_maps) == 1
    return str(config_maps[0]["data"]["config.yaml"])


def require_otelcol() -> Path:
    """bin/otelcol (the collector the e2e tests use, same release as the kind collector image)."""
    path = BIN / "otelcol"
    if not path.exists():
        pytest.fail("bin/otelcol is missing: run `ci/tools.sh otelcol` (or `make tools`)")
    return path


def run(cmd: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
