"""A real single-node Kubernetes made of host processes, like Kubernetes' hack/local-up-cluster.sh.

`Node(workdir=...).up()` starts, in this order, and waits for each:

1. the network: a bridge (`wpcni0`, 10.244.0.1/24) whose address is the node IP, and a FORWARD chain
   that lets pods talk to each other (Docker sets the FORWARD policy to DROP) but not to the outside;
2. its own containerd (not Docker's): socket, root and state under the work dir, overlayfs, runc with
   cgroupfs, the CNI bridge + host-local + portmap plugins of Debian's containernetworking-plugins, and a
   local sandbox (pause) image, because nothing can be pulled on this machine;
3. etcd + kube-apiserver (`ControlPlane`, bound to the node IP so pods reach it through the
   `kubernetes` Service), kube-controller-manager and kube-scheduler, each with its own client
   certificate signed by the cluster CA;
4. the kubelet, v1.35 (the last release that works with Debian's containerd 1.6; three minors of skew
   are supported), with cgroup v1 allowed (`failCgroupV1: false`: this machine has hybrid cgroups) and
   eviction thresholds at zero so a busy disk never evicts;
5. kube-proxy (iptables mode) and CoreDNS (a host process on the node IP, cluster.local only: every other
   name is NXDOMAIN, nothing is forwarded to an outside resolver).

Then it waits for the Node to be Ready, the `default` ServiceAccount and an answer of the cluster DNS
for `kubernetes.default.svc.cluster.local`. Everything is under `workdir` (default: the checkout's
`.state/node/`): `kubeconfig` (admin), `logs/<component>.log`, `node.json` (the processes, for `down`).

`down()` undoes it in reverse: the pods are deleted through the API while the kubelet still runs (so the
CNI plugins release their addresses and port mappings), the processes are stopped, then whatever is
left of containers, mounts, network namespaces, the bridge and the iptables chains is removed. `up()`
first cleans up after a node that was killed without `down()`. One node per machine: the bridge, the
pod subnet and the DNS address are fixed.

Command line: `python -m wp_devsupport.cluster up|down|status` (`make cluster-up`, `make cluster-down`).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

from ..ports import free_port
from ..processes import ManagedProcess
from ..repo import BIN, REPO
from .control_plane import ControlPlane, ControlPlaneError
from .scratch_images import PAUSE_IMAGE, pause_archive

#: The binaries `make tools` links into bin/ (ci/tools.sh), and what Debian provides (ci/services.sh).
TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "kube-proxy",
    "coredns",
)
HOST_COMMANDS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "iptables-save", "ip", "mount")
CNI_BIN_DIR = Path("/usr/lib/cni")
NODE_NAME = "wp-node"
CNI_NETWORK = "wp-node"
#: Which work dir this machine's node runs from (there can be one at a time).
OWNER = Path("/run/wp-node/owner")

#: CoreDNS's permissions: what kube-dns/CoreDNS manifests grant `system:coredns`.
COREDNS_RBAC = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}
"""


class NodeError(RuntimeError):
    """Why the node could not start or stop: one line, then the tail of the failing component's log."""


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _run(*cmd: str, check: bool = True, timeout: float = 60, input_text: str | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, input=input_text)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def dns_query(server: str, name: str, timeout: float = 2.0) -> tuple[int, list[str]]:
    """A minimal DNS client: (rcode, A records) for `name` asked of `server`:53 over UDP."""
    ident = random.randrange(1 << 16)  # noqa: S311 (a query id, not a secret)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, 53))
        reply, _ = sock.recvfrom(4096)
    _, flags, qdcount, ancount, _, _ = struct.unpack(">HHHHHH", reply[:12])
    offset = 12

    def skip_name(at: int) -> int:
        while reply[at] != 0:
            if reply[at] & 0xC0 == 0xC0:
                return at + 2
            at += reply[at] + 1
        return at + 1

    for _ in range(qdcount):
        offset = skip_name(offset) + 4
    addresses = []
    for _ in range(ancount):
        offset = skip_name(offset)
        rtype, _, _, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(reply[offset : offset + 4]))
        offset += length
    return flags & 0xF, addresses


@dataclass(kw_only=True)
class Node:
    """One node, configured by keyword: `Node(workdir=tmp_path / "node").up()`.

    `detach=True` (the command line) starts the processes in sessions of their own and without the
    parent-death guard, so they outlive the command; a test fixture leaves it False.
    """

    workdir: Path = field(default_factory=lambda: REPO / ".state" / "node")
    bridge: str = "wpcni0"
    pod_subnet: str = "10.244.0.0/24"
    node_ip: str = "10.244.0.1"
    service_cidr: str = "10.96.0.0/16"
    cluster_domain: str = "cluster.local"
    pause_image: str = PAUSE_IMAGE
    detach: bool = False
    log: Callable[[str], None] = print
    timings: dict[str, float] = field(default_factory=dict)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.logs = self.workdir / "logs"
        self.state_file = self.workdir / "node.json"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.run_dir = self.workdir / "run"
        self.socket = self.run_dir / "containerd.sock"
        self.kubelet_root = self.workdir / "kubelet"
        self.containerd_root = self.workdir / "containerd"  # kept across runs: the imported images
        self.cni_dir = self.workdir / "cni"
        self.control_plane: ControlPlane | None = None
        self.ports: dict[str, int] = {}

    # ------------------------------------------------------------------ public API

    @property
    def dns_ip(self) -> str:
        return self.node_ip

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60, input_text: str | None = None) -> str:
        return _run(
            str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args,
            check=check, timeout=timeout, input_text=input_text,
        )  # fmt: skip

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        return _run("ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args, check=check, timeout=timeout)

    def import_image(self, archive: Path) -> None:
        """Import a `docker save`/OCI archive into the node's containerd (where the kubelet finds images)."""
        self.ctr("images", "import", str(archive), timeout=300)

    def recorded_components(self) -> list[str]:
        """The components the running (or last) node recorded, running or not."""
        return list(self._recorded())

    def running(self) -> dict[str, int]:
        """The recorded components whose process is still alive: name -> pid."""
        return {name: pid for name, pid in self._recorded().items() if _alive(pid, name)}

    def up(self, timeout: float = 120.0) -> None:
        started = time.monotonic()
        self._preflight()
        alive = self.running()
        if alive:
            raise NodeError(
                f"a node is already running from {self.workdir} ({', '.join(f'{n}={p}' for n, p in alive.items())}); "
                "stop it first (make cluster-down)"
            )
        self._take_over_machine()
        self._fresh_dirs()
        self._record()
        try:
            self._step("network", self._start_network)
            self._step("containerd", self._start_containerd)
            self._step("control plane", self._start_control_plane, timeout)
            self._step("controller-manager+scheduler", self._start_controllers, timeout)
            # The kubelet before kube-proxy: kube-proxy waits (30s) for its Node object to exist.
            self._step("kubelet (node Ready)", self._start_kubelet, timeout)
            self._step("kube-proxy", self._start_kube_proxy, timeout)
            self._step("coredns", self._start_coredns, timeout)
            self._step("default ServiceAccount + DNS", self._wait_cluster_usable, timeout)
        except BaseException:
            self.down(quiet=True)
            raise
        self.timings["total"] = time.monotonic() - started
        self._record()

    def _take_over_machine(self) -> None:
        """One node per machine (fixed bridge, subnet, DNS address): refuse while another runs, clean up
        after one that was killed. OWNER records which work dir the machine's node belongs to."""
        owner = _owner()
        if owner is not None and owner != self.workdir:
            other = Node(workdir=owner, bridge=self.bridge, log=self.log)
            if other.running():
                raise NodeError(
                    f"another node is running from {owner}; stop it first: "
                    f"python -m wp_devsupport.cluster down --workdir {owner}"
                )
            self.log(f"[node] cleaning up after a node from {owner} that was not stopped")
            other.down(quiet=True)
        if self.state_file.exists() or self._bridge_exists():
            self.log("[node] cleaning up after a node that was not stopped")
            self.down(quiet=True)
        OWNER.parent.mkdir(parents=True, exist_ok=True)
        OWNER.write_text(str(self.workdir))

    def down(self, *, quiet: bool = False) -> None:
        """Stop everything and undo every side effect; safe on a half-started or killed node."""
        started = time.monotonic()
        say = (lambda _msg: None) if quiet else self.log
        recorded = self._recorded()
        pids = {name: pid for name, pid in recorded.items() if _alive(pid, name)}
        if "kube-apiserver" in pids and "kubelet" in pids and self.kubeconfig.exists():
            for name in ("kube-controller-manager", "kube-scheduler"):
                _stop_pid(pids.pop(name, 0), name)
            self._delete_pods(say)
        for name in ("kubelet", "coredns", "kube-proxy", "kube-scheduler", "kube-controller-manager"):
            _stop_pid(pids.pop(name, 0), name)
        if (BIN / "kube-proxy").exists():
            _run(str(BIN / "kube-proxy"), "--cleanup", check=False, timeout=60)
        for name in ("kube-apiserver", "etcd"):
            _stop_pid(pids.pop(name, 0), name)
        if "containerd" in pids:
            self._remove_containers()
        _stop_pid(pids.pop("containerd", 0), "containerd")
        for name, pid in pids.items():
            _stop_pid(pid, name)
        self._kill_shims()
        self._unmount_all()
        self._remove_netns()
        self._remove_network()
        self.state_file.unlink(missing_ok=True)
        if _owner() == self.workdir:
            OWNER.unlink(missing_ok=True)
        for proc in self.processes.values():
            proc.stop(timeout=1)
        self.processes.clear()
        say(f"[node] stopped in {time.monotonic() - started:.1f}s")

    def status(self) -> str:
        alive = self.running()
        if not alive:
            return f"no node running from {self.workdir}"
        lines = [f"node running from {self.workdir} (kubeconfig {self.kubeconfig})"]
        lines += [f"  {name:<24} pid {pid}" for name, pid in alive.items()]
        missing = set(self._recorded()) - set(alive)
        if missing:
            lines.append(f"  NOT running: {', '.join(sorted(missing))} (see {self.logs})")
        return "\n".join(lines)

    # ------------------------------------------------------------------ steps

    def _step(self, name: str, fn: Callable[..., None], *args: Any) -> None:
        mark = time.monotonic()
        fn(*args)
        self.timings[name] = time.monotonic() - mark
        self.log(f"[node] {name} ready in {self.timings[name]:.1f}s")

    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise NodeError("the node needs root (containerd, the bridge, iptables, mounts)")
        missing = [str(BIN / t) for t in TOOLS if not (BIN / t).exists()]
        if missing:
            raise NodeError(f"missing {', '.join(missing)}: run `make tools` (ci/tools.sh)")
        absent = [c for c in HOST_COMMANDS if shutil.which(c) is None]
        absent += [
            str(CNI_BIN_DIR / p)
            for p in ("bridge", "host-local", "loopback", "portmap")
            if not (CNI_BIN_DIR / p).exists()
        ]
        if absent:
            raise NodeError(f"missing {', '.join(absent)}: run `make services` (ci/services.sh)")

    def _fresh_dirs(self) -> None:
        for sub in ("run", "kubelet", "cni", "pki", "logs", "etcd-data", "pod-logs", "apiserver-certs", "config"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        for sub in ("run", "kubelet", "cni/net.d", "cni/ipam", "logs", "pod-logs", "config"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, command: list[str]) -> ManagedProcess:
        guard = [] if self.detach or shutil.which("setpriv") is None else ["setpriv", "--pdeathsig", "KILL", "--"]
        proc = ManagedProcess(name, [*guard, *command], self.logs / f"{name}.log", new_session=self.detach)
        self.processes[name] = proc
        self._record()
        return proc

    def _wait(self, name: str, ready: Callable[[], bool], timeout: float, what: str) -> None:
        proc = self.processes.get(name)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                if ready():
                    return
            if proc is not None and not proc.running():
                raise NodeError(
                    f"{name} exited with code {proc.process.returncode} before {what}; "
                    f"last lines of {proc.log_path}:\n{tail(proc.log_path)}"
                )
            if time.monotonic() > deadline:
                log = proc.log_path if proc else self.logs / f"{name}.log"
                raise NodeError(f"{what}: not reached after {timeout:.0f}s; last lines of {log}:\n{tail(log)}")
            time.sleep(0.2)

    def _start_network(self) -> None:
        for key in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
            path = Path("/proc/sys") / key
            if not path.exists():
                raise NodeError(f"{path} is missing: the kernel needs bridge netfilter (br_netfilter) for Services")
            if path.read_text().strip() != "1":
                path.write_text("1\n")  # left on by down(): Docker needs both too
        prefix = self.pod_subnet.split("/")[1]
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.node_ip}/{prefix}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        # Pods talk to pods (also through Services: bridged traffic passes FORWARD with br_netfilter),
        # and to the node itself (INPUT), but nothing they send is forwarded anywhere else.
        chain = self._chain
        _run("iptables", "-N", chain)
        _run("iptables", "-A", chain, "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT")
        _run("iptables", "-A", chain, "-i", self.bridge, "-j", "REJECT")
        _run("iptables", "-I", "FORWARD", "1", "-j", chain)

    @property
    def _chain(self) -> str:
        return f"WP-NODE-{self.bridge.upper()}"[:28]

    def _start_containerd(self) -> None:
        cni_conf = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    # Pods must not reach the outside anyway (the FORWARD chain rejects it): no NAT.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.pod_subnet, "gateway": self.node_ip}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.cni_dir / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.cni_dir / "net.d" / "10-wp-node.conflist").write_text(json.dumps(cni_conf, indent=2))
        cri = '"io.containerd.grpc.v1.cri"'
        config = f"""\
version = 2
root = "{self.containerd_root}"
state = "{self.run_dir / "containerd"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.run_dir / "containerd.ttrpc.sock"}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins.{cri}]
  sandbox_image = "{self.pause_image}"
  # This machine refuses writes to oom_score_adj below the current value (the kubelet logs
  # "Failed to ApplyOOMScoreAdj: permission denied"): containerd must only raise them.
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins.{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins.{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins.{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{self.cni_dir / "net.d"}"
    max_conf_num = 1
"""
        path = self.workdir / "config" / "containerd.toml"
        path.write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(path)])
        self._wait("containerd", lambda: self.ctr("version", timeout=5) != "", 30, "its socket answered")
        if self.pause_image not in self.ctr("images", "list", "-q"):
            # The project's own pause image (ci/node/images*) is imported by its build; a throwaway
            # one stands in until then (nothing can be pulled here).
            self.log(f"[node] {self.pause_image} not in the node's containerd: importing a throwaway one")
            archive = self.workdir / "run" / "pause.tar"
            self.import_image(pause_archive(archive))
            archive.unlink()

    def _start_control_plane(self, timeout: float) -> None:
        cp = ControlPlane(self.workdir, address=self.node_ip, service_cidr=self.service_cidr, detach=self.detach)
        self.control_plane = cp
        cp.make_pki()
        crt, key = cp.issue_certificate(
            "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"
        )
        cp.apiserver_args = [
            "--kubelet-client-certificate", str(crt), "--kubelet-client-key", str(key),
            "--kubelet-preferred-address-types", "InternalIP",
        ]  # fmt: skip
        try:
            cp.start(timeout=timeout)
        except ControlPlaneError as e:
            raise NodeError(str(e)) from None
        finally:
            for proc in (cp.etcd, cp.apiserver):
                if proc is not None:
                    self.processes[proc.name] = proc
            self._record()
        self.kubectl("apply", "-f", "-", input_text=COREDNS_RBAC)

    def _client_kubeconfig(self, name: str, subject: str) -> Path:
        assert self.control_plane is not None
        crt, key = self.control_plane.issue_certificate(name, subject)
        return self.control_plane.write_kubeconfig(self.workdir / "config" / f"{name}.kubeconfig", crt, key)

    def _secure_healthz(self, port: int) -> bool:
        # Their serving certificates are self-signed (made at start in --cert-dir): only liveness is asked.
        with warnings.catch_warnings(), urllib3.PoolManager(cert_reqs="CERT_NONE") as http:
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            return http.request("GET", f"https://127.0.0.1:{port}/healthz", timeout=2).status == 200

    def _start_controllers(self, timeout: float) -> None:
        cp = self.control_plane
        assert cp is not None
        pki = cp.pki
        kcm = self._client_kubeconfig("kube-controller-manager", "/CN=system:kube-controller-manager")
        port = self.ports["kube-controller-manager"] = free_port()
        self._spawn(
            "kube-controller-manager",
            [
                str(BIN / "kube-controller-manager"),
                "--kubeconfig", str(kcm),
                "--authentication-kubeconfig", str(kcm),
                "--authorization-kubeconfig", str(kcm),
                "--bind-address", "127.0.0.1", "--secure-port", str(port),
                "--cert-dir", str(self.workdir / "run" / "kcm-certs"),
                "--leader-elect=false",
                "--controllers=*",
                # host-local (CNI) hands out pod addresses: no node IPAM.
                "--allocate-node-cidrs=false",
                "--service-cluster-ip-range", self.service_cidr,
                "--cluster-name", NODE_NAME,
                "--root-ca-file", str(pki / "ca.crt"),
                "--cluster-signing-cert-file", str(pki / "ca.crt"),
                "--cluster-signing-key-file", str(pki / "ca.key"),
                "--service-account-private-key-file", str(pki / "sa.key"),
                "--use-service-account-credentials=true",
            ],
        )  # fmt: skip
        sched = self._client_kubeconfig("kube-scheduler", "/CN=system:kube-scheduler")
        sport = self.ports["kube-scheduler"] = free_port()
        self._spawn(
            "kube-scheduler",
            [
                str(BIN / "kube-scheduler"),
                "--kubeconfig", str(sched),
                "--authentication-kubeconfig", str(sched),
                "--authorization-kubeconfig", str(sched),
                "--bind-address", "127.0.0.1", "--secure-port", str(sport),
                "--cert-dir", str(self.workdir / "run" / "scheduler-certs"),
                "--leader-elect=false",
            ],
        )  # fmt: skip
        self._wait("kube-controller-manager", lambda: self._secure_healthz(port), timeout, "its /healthz answered")
        self._wait("kube-scheduler", lambda: self._secure_healthz(sport), timeout, "its /healthz answered")

    def _start_kube_proxy(self, timeout: float) -> None:
        kubeconfig = self._client_kubeconfig("kube-proxy", "/CN=system:kube-proxy")
        healthz, metrics = free_port(), free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clusterCIDR": self.pod_subnet,
            "hostnameOverride": NODE_NAME,
            # The node IP, known up front (the Node object only appears once the kubelet registers).
            "bindAddress": self.node_ip,
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{metrics}",
            # NodePorts on the node IP only, never on the machine's outside interfaces or loopback
            # (localhostNodePorts would also flip the route_localnet sysctl).
            "nodePortAddresses": [f"{self.node_ip}/32"],
            "iptables": {"localhostNodePorts": False},
            # Leave the machine's conntrack sysctls alone.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }
        path = self.workdir / "config" / "kube-proxy.json"
        path.write_text(json.dumps(config, indent=2))
        self._spawn("kube-proxy", [str(BIN / "kube-proxy"), "--config", str(path)])

        def synced() -> bool:
            text = requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=2).text
            return "kubeproxy_sync_proxy_rules_last_timestamp_seconds " in text and (
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds 0\n" not in text
            )

        self._wait("kube-proxy", synced, timeout, "its first iptables sync")

    def _start_coredns(self, timeout: float) -> None:
        kubeconfig = self._client_kubeconfig("coredns", "/CN=system:coredns")
        ready = free_port()
        corefile = f"""\
{self.cluster_domain}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {self.dns_ip}
    errors
    ready 127.0.0.1:{ready}
    kubernetes {self.cluster_domain} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} test
        pods insecure
    }}
    cache 5
    loadbalance
}}
# Every other name: NXDOMAIN. Nothing is forwarded to a resolver outside the node.
.:53 {{
    bind {self.dns_ip}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
        path = self.workdir / "config" / "Corefile"
        path.write_text(corefile)
        self._spawn("coredns", [str(BIN / "coredns"), "-conf", str(path)])
        self._wait(
            "coredns",
            lambda: requests.get(f"http://127.0.0.1:{ready}/ready", timeout=2).status_code == 200,
            timeout,
            "its /ready answered",
        )

    def _start_kubelet(self, timeout: float) -> None:
        cp = self.control_plane
        assert cp is not None
        kubeconfig = self._client_kubeconfig("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}")
        crt, key = cp.issue_certificate("kubelet-serving", f"/CN={NODE_NAME}", server_names=[self.node_ip, NODE_NAME])
        resolv = self.workdir / "config" / "resolv.conf"
        # What pods with dnsPolicy Default get, and the search/nameserver base of the others: only the
        # cluster DNS, never the machine's resolvers.
        resolv.write_text(f"nameserver {self.dns_ip}\n")
        port, healthz = free_port(), free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine has hybrid cgroups (v1 controllers): kubelet >= 1.35 refuses them unless told.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.node_ip,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "clusterDNS": [self.dns_ip],
            "clusterDomain": self.cluster_domain,
            "resolvConf": str(resolv),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(cp.ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(crt),
            "tlsPrivateKeyFile": str(key),
            "failSwapOn": False,
            # A busy shared disk must never evict the pods or collect the (unpullable) images.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"},
            "podLogsDir": str(self.workdir / "pod-logs"),
            "serializeImagePulls": False,
        }
        path = self.workdir / "config" / "kubelet.json"
        path.write_text(json.dumps(config, indent=2))
        self._spawn(
            "kubelet",
            [
                str(BIN / "kubelet"),
                "--config", str(path),
                "--kubeconfig", str(kubeconfig),
                "--root-dir", str(self.kubelet_root),
                "--cert-dir", str(self.workdir / "run" / "kubelet-certs"),
                "--hostname-override", NODE_NAME,
                "--node-ip", self.node_ip,
            ],
        )  # fmt: skip

        def node_ready() -> bool:
            out = self.kubectl(
                "get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False, timeout=10,
            )  # fmt: skip
            return out.strip() == "True"

        self._wait("kubelet", node_ready, timeout, f"node {NODE_NAME} Ready")

    def _wait_cluster_usable(self, timeout: float) -> None:
        self._wait(
            "kube-controller-manager",
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False, timeout=10) != "",
            timeout,
            "the default ServiceAccount in namespace default",
        )
        want = self.control_plane.kubernetes_service_ip if self.control_plane else ""
        name = f"kubernetes.default.svc.{self.cluster_domain}"
        self._wait(
            "coredns", lambda: dns_query(self.dns_ip, name)[1] == [want], timeout, f"DNS answer {name} -> {want}"
        )

    # ------------------------------------------------------------------ teardown helpers

    def _delete_pods(self, say: Callable[[str], None]) -> None:
        """Delete every pod while the kubelet runs: it stops the sandboxes through the CRI, so the CNI
        plugins release the addresses and port mappings and the network namespaces go."""
        self.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false", check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = self.kubectl("get", "pods", "-A", "-o", "name", check=False, timeout=10).split()
            if not left and not self._running_tasks():
                return
            time.sleep(0.5)
        say("[node] pods still there after 30s; removing their containers directly")

    def _running_tasks(self) -> list[str]:
        out = self.ctr("tasks", "list", check=False, timeout=10)
        return [line.split()[0] for line in out.splitlines()[1:] if line.strip()]

    def _remove_containers(self) -> None:
        for task in self._running_tasks():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False, timeout=10)
        for task in self._running_tasks():
            self.ctr("tasks", "delete", "--force", task, check=False, timeout=20)
        for container in self.ctr("containers", "list", "-q", check=False, timeout=10).split():
            self.ctr("containers", "delete", container, check=False, timeout=20)

    def _kill_shims(self) -> None:
        """The runc shims of our containerd (and so their containers) when containerd itself is gone."""
        marker = str(self.socket).encode()
        for pid in _pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and marker in cmdline:
                for child in [*_descendants(pid), pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)

    def _unmount_all(self) -> None:
        """Every mount under the work dir (pod volumes, container rootfs, sandbox shm), deepest first."""
        root = str(self.workdir) + "/"
        for _ in range(3):
            mounts = [
                line.split()[4].replace("\\040", " ") for line in Path("/proc/self/mountinfo").read_text().splitlines()
            ]
            ours = sorted({m for m in mounts if m.startswith(root)}, key=len, reverse=True)
            if not ours:
                return
            for mount in ours:
                _run("umount", "--lazy", mount, check=False)

    def _remove_netns(self) -> None:
        """containerd's pod network namespaces (/run/netns/cni-*) that no process uses any more."""
        netns = Path("/run/netns")
        if not netns.is_dir():
            return
        for ns in netns.glob("cni-*"):
            if not _run("ip", "netns", "pids", ns.name, check=False).strip():
                _run("ip", "netns", "delete", ns.name, check=False)

    def _bridge_exists(self) -> bool:
        return Path("/sys/class/net", self.bridge).exists()

    def _remove_network(self) -> None:
        if self._bridge_exists():
            _run("ip", "link", "delete", self.bridge, check=False)
        chain = self._chain
        while _run("iptables", "-D", "FORWARD", "-j", chain, check=False, timeout=20) == "" and _iptables_has(
            "FORWARD", chain
        ):
            pass
        _run("iptables", "-F", chain, check=False)
        _run("iptables", "-X", chain, check=False)
        # The kubelet's own chains (`kube-proxy --cleanup` leaves them): its canaries, the iptables-mode
        # hint and KUBE-FIREWALL, which drops outside packets addressed to 127.0.0.0/8.
        for tool in ("iptables", "ip6tables"):
            if shutil.which(tool) is None:
                continue
            for table in ("filter", "nat", "mangle"):
                for hook in ("INPUT", "OUTPUT"):
                    while _run(
                        tool, "-t", table, "-D", hook, "-j", "KUBE-FIREWALL", check=False, timeout=20
                    ) == "" and ("-j KUBE-FIREWALL" in _run(tool, "-t", table, "-S", hook, check=False)):
                        pass
                for kubelet_chain in ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"):
                    _run(tool, "-t", table, "-F", kubelet_chain, check=False)
                    _run(tool, "-t", table, "-X", kubelet_chain, check=False)
        # portmap's per-pod chains when a pod was not torn down through the CNI (a killed node).
        needle = f'name: \\"{CNI_NETWORK}\\"'
        for line in _run("iptables-save", "-t", "nat", check=False).splitlines():
            if line.startswith("-A ") and needle in line:
                rule = line[3:]
                target = rule.rsplit(" -j ", 1)[-1].split()[0]
                _run("sh", "-c", f"iptables -t nat -D {rule}", check=False)
                if target.startswith("CNI-DN-"):
                    _run("iptables", "-t", "nat", "-F", target, check=False)
                    _run("iptables", "-t", "nat", "-X", target, check=False)

    # ------------------------------------------------------------------ state file

    def _record(self) -> None:
        data = {
            "workdir": str(self.workdir),
            "kubeconfig": str(self.kubeconfig),
            "node_ip": self.node_ip,
            "bridge": self.bridge,
            "processes": {name: proc.pid for name, proc in self.processes.items()},
            "timings": self.timings,
        }
        old = self._recorded()
        data["processes"] = {**old, **data["processes"]}  # type: ignore[dict-item]
        self.state_file.write_text(json.dumps(data, indent=2))

    def _recorded(self) -> dict[str, int]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): int(v) for k, v in data.get("processes", {}).items()}


def _owner() -> Path | None:
    try:
        return Path(OWNER.read_text().strip())
    except OSError:
        return None


def _pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in _pids():
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(p)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int, name: str) -> bool:
    """`pid` runs and is `name` (its command line names the binary: a reused pid is not ours)."""
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and name.encode() in cmdline


def _stop_pid(pid: int, name: str, timeout: float = 15.0) -> None:
    if not _alive(pid, name):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid, name) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if _alive(pid, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _iptables_has(chain: str, target: str) -> bool:
    return f"-j {target}" in _run("iptables", "-S", chain, check=False)
