"""The single-node Kubernetes of wp_devsupport.cluster.node really runs pods.

The session's node (tests/node/conftest.py): the one already running from `.state/node` (`make
cluster-up`) or from WP_NODE_WORKDIR, left running, or one started for the session. The pods use
a throwaway busybox image imported from Debian's static busybox (nothing can be pulled here).

Proven: the node is Ready; a pod with an HTTP readiness probe becomes Ready; a ClusterIP Service
reaches it from another pod (by its DNS name) and from the host; the cluster DNS answers for the
Service and refuses to resolve outside names; `kubectl logs` and `kubectl exec` work (both go from the
API server to the kubelet). Anything missing fails the test with the reason; nothing is skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from wp_devsupport.cluster.node import NODE_NAME, Node, NodeError, dns_query
from wp_devsupport.cluster.scratch_images import BUSYBOX_IMAGE, ScratchImageError, busybox_archive

NS = "node-basics"

WEB = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "web",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": [
                    "sh",
                    "-c",
                    "mkdir /www && echo hello-from-web >/www/index.html && exec httpd -f -vv -p 8080 -h /www",
                ],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
            }
        ],
    },
}
CLIENT = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "client", "namespace": NS},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {"name": "client", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}
        ],
    },
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": NS},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
}


@pytest.fixture(scope="module")
def node(node: Node) -> Iterator[Node]:
    """The session's node (tests/node/conftest.py) with a busybox image and this module's pods."""
    try:
        archive = busybox_archive(node.workdir / "busybox.tar")
        node.import_image(archive)
        node.kubectl("create", "namespace", NS, check=False)
        node.kubectl(
            "apply",
            "-f",
            "-",
            input_text=json.dumps({"kind": "List", "apiVersion": "v1", "items": [WEB, CLIENT, SERVICE]}),
        )
    except (NodeError, ScratchImageError) as e:
        pytest.fail(f"the node could not be set up: {e}")
    yield node
    node.kubectl("delete", "namespace", NS, "--wait=false", check=False)


@pytest.fixture(scope="module")
def pods_ready(node: Node) -> None:
    for pod in ("web", "client"):
        out = node.kubectl(
            "wait", "-n", NS, f"pod/{pod}", "--for=condition=Ready", "--timeout=60s", check=False, timeout=90
        )
        if "condition met" not in out:
            described = node.kubectl("describe", "-n", NS, f"pod/{pod}", check=False)
            pytest.fail(f"pod {pod} not Ready within 60s:\n{described[-3000:]}")


def test_the_node_is_ready(node: Node) -> None:
    conditions = json.loads(node.kubectl("get", "node", NODE_NAME, "-o", "json"))["status"]["conditions"]
    ready = {c["type"]: c["status"] for c in conditions}
    assert ready["Ready"] == "True", conditions


def test_a_pod_with_a_readiness_probe_becomes_ready(node: Node, pods_ready: None) -> None:
    pod = json.loads(node.kubectl("get", "-n", NS, "pod/web", "-o", "json"))
    assert pod["status"]["podIP"].startswith("10.244.0.")
    assert pod["spec"]["nodeName"] == NODE_NAME


def test_a_cluster_ip_service_reaches_the_pod_from_a_pod_by_its_dns_name(node: Node, pods_ready: None) -> None:
    # busybox's nc, not its wget: Debian's static busybox wget crashes (exit 139) once connected.
    request = f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 2 web.{NS}.svc.cluster.local 80'
    out = ""
    for _ in range(20):  # the Service's endpoints reach kube-proxy a moment after the pod is Ready
        out = node.kubectl("exec", "-n", NS, "client", "--", "sh", "-c", request, check=False)
        if "hello-from-web" in out:
            break
        time.sleep(0.5)
    assert out.startswith("HTTP/1.1 200 OK"), out
    assert out.rstrip().endswith("hello-from-web"), out


def test_a_cluster_ip_service_reaches_the_pod_from_the_host(node: Node, pods_ready: None) -> None:
    ip = node.kubectl("get", "-n", NS, "service/web", "-o", "jsonpath={.spec.clusterIP}").strip()
    assert ip.startswith("10.96.")
    for _ in range(20):
        try:
            reply = requests.get(f"http://{ip}/", timeout=2)
            break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        pytest.fail(f"http://{ip}/ (Service web) not reachable from the host")
    assert reply.text.strip() == "hello-from-web"


def test_the_cluster_dns_answers_for_services_and_nothing_else(node: Node, pods_ready: None) -> None:
    ip = node.kubectl("get", "-n", NS, "service/web", "-o", "jsonpath={.spec.clusterIP}").strip()
    assert dns_query(node.dns_ip, f"web.{NS}.svc.cluster.local") == (0, [ip])
    rcode, addresses = dns_query(node.dns_ip, "example.com")
    assert (rcode, addresses) == (3, [])  # NXDOMAIN: nothing is forwarded outside
    resolv = node.kubectl("exec", "-n", NS, "client", "--", "cat", "/etc/resolv.conf")
    assert f"nameserver {node.dns_ip}" in resolv
    assert f"search {NS}.svc.cluster.local svc.cluster.local cluster.local" in resolv
    looked_up = node.kubectl("exec", "-n", NS, "client", "--", "nslookup", "web", check=False)
    assert ip in looked_up, looked_up


def test_logs_and_exec(node: Node, pods_ready: None) -> None:
    assert node.kubectl("exec", "-n", NS, "web", "--", "cat", "/www/index.html").strip() == "hello-from-web"
    logs = node.kubectl("logs", "-n", NS, "web")
    assert "GET /index.html" in logs or "url:/index.html" in logs, logs[-2000:]
