"""The chart against a real Kubernetes API server: one etcd + kube-apiserver for the whole session.

Fixtures:
* `control_plane` (session): etcd and kube-apiserver started by wp_devsupport.cluster.control_plane.ControlPlane, stopped at
  the end of the session whatever happens. Skipped, with the command to run, when bin/etcd and
  bin/kube-apiserver are both missing (`ci/tools.sh etcd kube-apiserver`); an error when only one is.
* `cluster` (session): the control plane with the prometheus-operator and KEDA CRDs Established, an API
  client and a `helm` runner.
* `namespace` (function): a fresh namespace per test, labelled for the Pod Security Standards'
  `restricted` profile (enforce, warn and audit), so tests never see each other's objects.

When a test fails, what the API server, etcd and the audit log recorded during that test is attached to
its report. The start time of the control plane is printed in the terminal summary.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator

import pytest

from wp_devsupport.chart import cleanup as chart_cleanup
from wp_devsupport.chart import helm_path
from wp_devsupport.cluster.control_plane import ETCD, KUBE_APISERVER, ControlPlane
from wp_devsupport.cluster.kube_client import Helm, KubeClient
from wp_devsupport.cluster.support import CRD_DIR, RESTRICTED, Cluster, Namespace, create_namespace, install_crds

_active: ControlPlane | None = None
_summary: list[str] = []
_offsets = pytest.StashKey[dict[str, int]]()


def _require_tools() -> None:
    missing = [p.name for p in (ETCD, KUBE_APISERVER) if not p.exists()]
    if len(missing) == 2:
        pytest.skip(
            "bin/etcd and bin/kube-apiserver are missing: run `ci/tools.sh etcd kube-apiserver` (or `make tools`)"
        )
    if missing:
        pytest.fail(f"bin/{missing[0]} is missing although its partner exists: run `ci/tools.sh etcd kube-apiserver`")
    helm_path("helm")
    helm_path("helm3")
    if not CRD_DIR.is_dir():
        pytest.fail("bin/crd-schemas/crds is missing: run `ci/tools.sh crds`")
    if not shutil.which("openssl"):
        pytest.fail("openssl is missing (Debian package openssl): it makes the control plane's certificates")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    global _active  # noqa: PLW0603 - the report hooks below need the session's control plane
    _require_tools()
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    try:
        plane.start()
        _active = plane
        t = plane.timings
        _summary.append(
            f"control plane ready in {t.total:.1f}s (certificates {t.certificates:.1f}s, etcd {t.etcd:.1f}s, "
            f"kube-apiserver {t.apiserver:.1f}s) at {plane.server}; logs in {plane.logs}"
        )
        yield plane
    finally:
        _active = None
        plane.stop()
        if plane.timings.stop:
            _summary.append(f"control plane stopped in {plane.timings.stop:.1f}s")


@pytest.fixture(scope="session")
def cluster(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    kube = KubeClient(control_plane)
    started = time.monotonic()
    crds = install_crds(kube)
    _summary.append(
        f"{len(crds)} CRDs Established and listable in {time.monotonic() - started:.1f}s: {', '.join(crds)}"
    )
    # The ServiceMonitor scenario puts its ServiceMonitor into `monitoring` (where Prometheus runs).
    kube.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}})
    return Cluster(control_plane, kube, Helm(control_plane, tmp_path_factory.mktemp("helm-home")))


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Namespace:
    """A new namespace for this test, enforcing the `restricted` Pod Security Standard."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    # Namespaces are never deleted: without the namespace controller they would stay Terminating anyway.
    return create_namespace(cluster, cluster.unique(f"{slug[:50]}-"), RESTRICTED)


# ---------------------------------------------------------------------------------------- reports


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_offsets] = _active.log_offsets() if _active is not None else {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    # A failure in the test itself gets the logs of the test only, not those of its fixtures' setup.
    if _active is not None:
        item.stash[_offsets] = _active.log_offsets()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    plane = _active
    if report.failed and plane is not None and "control_plane" in getattr(item, "fixturenames", ()):
        for name, text in plane.logs_since(item.stash.get(_offsets, {})).items():
            report.sections.append((f"{name} log during this test", text))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _summary:
        terminalreporter.write_sep("-", "kube-apiserver + etcd")
        for line in _summary:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    chart_cleanup()
