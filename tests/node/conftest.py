"""Fixtures of the pod-level tests: the chart's pods on a real single-node Kubernetes.

* `node` (session): the node of wp_devsupport.cluster.node, one for every module of tests/node (there
  can be only one per machine: the bridge, pod subnet and DNS address are fixed). A node already running
  from this checkout's `.state/node/` (`make cluster-up`), or from the directory in `WP_NODE_WORKDIR`,
  is used as it is and left running; otherwise the session starts one in `.state/node/` (whose
  containerd keeps the imported images) and stops it at the end. Missing tools, root or images make the
  tests fail with the command to run, never skip.
* `node_images` (session): the worker and test API images of this checkout (`ci/node/images.sh build`)
  in the node's containerd (`ci/node/images.sh import` when missing or another build).
* `kube`, `helm` (session): an API client and bin/helm (Helm 4) for the node.
* `host_redis` (function): a Redis on the host with an append-only file (wp_devsupport.faults.AofRedis),
  listening on loopback and on the node's bridge address where pods reach it, with a password.
* `deploy` (function): installs the chart into a fresh namespace that enforces the `restricted` Pod
  Security Standard, pointed at `host_redis`, and waits until every pod is Ready. The namespace is
  deleted after the test; when the test fails, `kubectl describe` and the container logs of the
  namespace are attached to its report.

The numbers the tests measure (jobs sent, processed, lost, run twice; shutdown and recovery times) are
printed in the terminal summary.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from wp_devsupport.cluster.node import Node, NodeError
from wp_devsupport.cluster.node_jobs import (
    LIVE_NAMESPACES,
    REPORT,
    Deploy,
    Deployer,
    KubeApi,
    NodeEnv,
    NodeHelm,
    images_to_import,
    namespace_report,
)
from wp_devsupport.faults import AofRedis
from wp_devsupport.node_images import API_IMAGE, IMAGES_SCRIPT, WORKER_IMAGE
from wp_devsupport.processes import ManagedProcess
from wp_devsupport.repo import REPO

_summary: list[str] = []
_kubeconfig: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _fresh_report() -> None:
    REPORT.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------- the node


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    global _kubeconfig  # noqa: PLW0603 - the failure report needs the session's kubeconfig
    workdir = Path(os.environ.get("WP_NODE_WORKDIR") or REPO / ".state" / "node")
    node = Node(workdir=workdir, log=lambda _line: None)
    started = False
    running = node.running()
    if running:
        dead = sorted(set(node._recorded()) - set(running))  # the node's own record
        if dead:
            pytest.fail(f"the node in {workdir} is half running ({', '.join(dead)} stopped):\n{node.status()}")
        _summary.append(f"node: using the node already running from {workdir}")
    else:
        if Path("/sys/class/net", node.bridge).exists():
            pytest.fail(
                f"bridge {node.bridge} exists but no node runs from {workdir}: another checkout's node? "
                "Point WP_NODE_WORKDIR at its work directory, or stop it (make cluster-down there)"
            )
        mark = time.monotonic()
        try:
            node.up()
        except NodeError as e:
            pytest.fail(f"the node did not start: {e}")
        started = True
        _summary.append(f"node: started in {time.monotonic() - mark:.1f}s from {workdir}")
    _kubeconfig = node.kubeconfig
    try:
        yield node
    finally:
        _kubeconfig = None
        if started:
            mark = time.monotonic()
            node.down(quiet=True)
            _summary.append(f"node: stopped in {time.monotonic() - mark:.1f}s")


@pytest.fixture(scope="session")
def node_images(node: Node, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The worker and API images of this checkout in the node's containerd (pullPolicy Never: the node
    cannot pull). They are built first (`ci/node/images.sh build worker api`: about 2 s when BuildKit's
    cache is current, minutes cold), since another checkout on the machine may have built the same tags,
    and imported again when containerd holds another build than Docker (a tag does not say which)."""
    wanted = [WORKER_IMAGE, API_IMAGE]
    images_dir = tmp_path_factory.mktemp("images")
    mark = time.monotonic()
    build = ManagedProcess("images-build", [str(IMAGES_SCRIPT), "build", "worker", "api"], images_dir / "build.log")
    if build.wait(timeout=1800) != 0:
        pytest.fail(f"ci/node/images.sh build worker api failed:\n{build.output()[-3000:]}")
    _summary.append(f"node: worker and API images built (or found current) in {time.monotonic() - mark:.1f}s")
    todo = images_to_import(node, wanted)
    if todo:
        log = images_dir / "import.log"
        command = [str(IMAGES_SCRIPT), "import", "--address", str(node.socket), "worker", "api"]
        proc = ManagedProcess("images-import", command, log)
        code = proc.wait(timeout=600)
        left = images_to_import(node, wanted)
        if code != 0 or left:
            pytest.fail(
                f"images not usable in the node's containerd: {todo}; `{' '.join(command)}` failed (exit {code}, "
                f"still {left}); build them first: ci/node/images.sh build worker api\n{proc.output()[-3000:]}"
            )
        _summary.append(f"node: imported {todo} into the node's containerd")
    return wanted


@pytest.fixture(scope="session")
def kube(node: Node) -> KubeApi:
    return KubeApi(node.kubeconfig)


@pytest.fixture(scope="session")
def helm(node: Node, tmp_path_factory: pytest.TempPathFactory) -> NodeHelm:
    return NodeHelm(node.kubeconfig, tmp_path_factory.mktemp("helm-home"))


# ---------------------------------------------------------------------------------------- per test


@pytest.fixture
def host_redis(node: Node, tmp_path: Path) -> Iterator[AofRedis]:
    server = AofRedis(tmp_path / "redis", bind=(node.node_ip,), password=secrets.token_urlsafe(24))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def env(node: Node, node_images: list[str], kube: KubeApi, helm: NodeHelm) -> NodeEnv:
    return NodeEnv(node, kube, helm)


@pytest.fixture
def deploy(request: pytest.FixtureRequest, env: NodeEnv, host_redis: AofRedis) -> Iterator[Deploy]:
    """`deploy(mode, **values)`: the chart installed in a new restricted namespace, every pod Ready."""
    deployer = Deployer(env, host_redis, request.node.name)
    yield deployer.install
    deployer.cleanup()


# ---------------------------------------------------------------------------------------- reports


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when == "call" and _kubeconfig is not None:
        for namespace in LIVE_NAMESPACES:
            for title, text in namespace_report(_kubeconfig, namespace):
                report.sections.append((title, text))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = list(_summary)
    if REPORT.exists():
        lines += [json.loads(line)["summary"] for line in REPORT.read_text().splitlines()]
    if lines:
        terminalreporter.section("node tests: pods, jobs sent/processed/lost/run twice, shutdown and recovery")
        for line in lines:
            terminalreporter.write_line(line)
