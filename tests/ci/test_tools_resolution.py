"""ci/tools.sh's module resolution on a cold machine, without compiling anything.

Every CI run used to happen on a machine whose Go module cache already held the wrapper modules'
sources, so a recipe that read a module directory without downloading it first (`go list -m -f
'{{.Dir}}'` prints nothing for a module that is not in the cache yet) passed CI and failed for
every newcomer. These tests run tools.sh's own resolution functions with the real `go`, against an
empty temporary module cache and a module proxy made of files in a temporary directory (GOPROXY=
file://...), so they need no network and take about a second.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS_SH = REPO / "ci" / "tools.sh"
MODULE = "example.test/pinned-tool"
VERSION = "v1.2.3"

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="go is not on PATH")


def _publish(proxy: Path, module: str, version: str, files: dict[str, str]) -> None:
    """Lay out MODULE@VERSION the way a GOPROXY serves it (the file:// protocol is the same)."""
    base = proxy / module / "@v"
    base.mkdir(parents=True, exist_ok=True)
    go_mod = f"module {module}\n\ngo 1.22\n"
    (base / "list").write_text(f"{version}\n")
    (base / f"{version}.info").write_text(f'{{"Version":"{version}","Time":"2026-01-02T03:04:05Z"}}\n')
    (base / f"{version}.mod").write_text(go_mod)
    with zipfile.ZipFile(base / f"{version}.zip", "w") as archive:
        archive.writestr(f"{module}@{version}/go.mod", go_mod)
        for name, text in files.items():
            archive.writestr(f"{module}@{version}/{name}", text)


@pytest.fixture
def cold_go(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment with an empty module cache and a local proxy, and a wrapper module pinning MODULE."""
    proxy = tmp_path / "proxy"
    _publish(proxy, MODULE, VERSION, {"VERSION": "1.2.3\n"})
    wrapper = tmp_path / "wrapper"
    wrapper.mkdir()
    (wrapper / "go.mod").write_text(f"module wrapper\n\ngo 1.22\n\nrequire {MODULE} {VERSION}\n")
    env = {
        **os.environ,
        "GOMODCACHE": str(tmp_path / "gomod"),
        "GOCACHE": str(tmp_path / "gobuild"),
        "GOPROXY": f"file://{proxy}",
        "GOSUMDB": "off",
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": "local",
        "WP_TOOLS_CACHE": str(tmp_path / "tools"),
    }
    return env, wrapper


def _tools_fn(env: dict[str, str], *call: str) -> subprocess.CompletedProcess[str]:
    script = 'source "$1"; shift; "$@"'
    return subprocess.run(
        ["bash", "-c", script, "tools.sh", str(TOOLS_SH), *call],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cold_cache_is_real(cold_go: tuple[dict[str, str], Path]) -> None:
    """The situation that broke newcomers: go.mod resolved, module source absent, `{{.Dir}}` empty."""
    env, wrapper = cold_go
    listed = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", MODULE],
        cwd=wrapper,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert listed.stdout.strip() == ""


def test_module_dir_downloads_before_reading(cold_go: tuple[dict[str, str], Path]) -> None:
    env, wrapper = cold_go
    result = _tools_fn(env, "module_dir", str(wrapper), MODULE)
    assert result.returncode == 0, result.stderr
    directory = Path(result.stdout.strip())
    assert (directory / "VERSION").read_text() == "1.2.3\n"
    assert directory.is_relative_to(env["GOMODCACHE"])


def test_module_dir_fails_loudly_when_the_module_cannot_be_had(cold_go: tuple[dict[str, str], Path]) -> None:
    env, wrapper = cold_go
    (wrapper / "go.mod").write_text(f"module wrapper\n\ngo 1.22\n\nrequire {MODULE} v9.9.9\n")
    result = _tools_fn(env, "module_dir", str(wrapper), MODULE)
    assert result.returncode != 0
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(("pinned", "ok"), [(VERSION, True), ("v1.2.4", False)])
def test_require_version_on_a_cold_cache(cold_go: tuple[dict[str, str], Path], pinned: str, ok: bool) -> None:
    env, wrapper = cold_go
    result = _tools_fn(env, "require_version", str(wrapper), MODULE, pinned)
    assert (result.returncode == 0) is ok, result.stderr
    if not ok:
        assert "go.mod has example.test/pinned-tool v1.2.3 but ci/tools.sh pins v1.2.4" in result.stderr


def test_every_module_directory_read_goes_through_module_dir() -> None:
    """Statically: `{{.Dir}}` is read in one place in the build scripts, the function that downloads first."""
    readers: list[str] = []
    for script in sorted((REPO / "ci").rglob("*.sh")):
        for number, line in enumerate(script.read_text().splitlines(), 1):
            if "{{.Dir}}" in line and not line.lstrip().startswith("#"):
                readers.append(f"{script.relative_to(REPO)}:{number}")
    assert readers == [next(r for r in readers if r.startswith("ci/tools.sh:"))], readers
    body = re.search(r"^module_dir\(\) \{\n(.*?)^\}", TOOLS_SH.read_text(), re.S | re.M)
    assert body is not None
    assert body.group(1).index("go mod download") < body.group(1).index("{{.Dir}}")


@pytest.mark.parametrize("wrapper", ["kube-apiserver", "kubelet"])
def test_the_kubernetes_wrappers_replace_every_staging_module_at_their_release(wrapper: str) -> None:
    """Both Kubernetes wrappers pass tools.sh's own staging check with the version tools.sh pins for them."""
    pinned = re.search(
        rf"^{'KUBERNETES' if wrapper == 'kube-apiserver' else 'KUBELET'}_VERSION=(\S+)$", TOOLS_SH.read_text(), re.M
    )
    assert pinned is not None
    result = _tools_fn(dict(os.environ), "require_staging", str(REPO / "ci" / "gomod" / wrapper), pinned.group(1))
    assert result.returncode == 0, result.stderr
    go_mod = (REPO / "ci" / "gomod" / wrapper / "go.mod").read_text()
    assert f"k8s.io/kubernetes {pinned.group(1)}" in go_mod


def test_require_staging_names_a_stray_replace(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module w\n\nreplace (\n\tk8s.io/api => k8s.io/api v0.36.1\n)\n")
    result = _tools_fn(dict(os.environ), "require_staging", str(tmp_path), "v1.37.2")
    assert result.returncode != 0
    assert "replace lines not at v0.37.2: \tk8s.io/api => k8s.io/api v0.36.1" in result.stderr
