"""A real Kubernetes control plane for the chart tests: etcd + kube-apiserver, nothing else.

`ControlPlane(workdir).start()` generates a CA, the API server's serving certificate, an admin client
certificate (group `system:masters`) and a service-account signing key with `openssl`, starts `bin/etcd`
and `bin/kube-apiserver` (built by `ci/tools.sh etcd kube-apiserver`) on free loopback ports, writes a
kubeconfig and waits for `/readyz`. `stop()` stops both (SIGTERM, then SIGKILL) and is safe to call twice.

What runs is the API server and its storage only, envtest style: no kubelet, no scheduler, no
controller manager. Objects are validated, defaulted, admitted (PodSecurity included) and stored, but
Deployments never get ReplicaSets or Pods, namespaces never finish terminating and the `default`
ServiceAccount of a new namespace is never created. Tests must not expect any of that.

Options for a control plane that serves a real node (`wp_devsupport.cluster.node`): `address` (bind and
advertise the API server there instead of loopback, so pods can reach it through the `kubernetes`
Service), `service_cidr`, `apiserver_args` (extra flags, e.g. the kubelet client certificate) and
`detach` (no parent-death guard, own session: the processes outlive a `make cluster-up`).
`issue_certificate()` and `write_kubeconfig()` give the other components their client identities.

Logs: `logs/etcd.log`, `logs/kube-apiserver.log` and `logs/audit.log` (every request at `Metadata`
level, JSON lines) under the work directory; `log_offsets()` and `logs_since()` let the conftest attach
what was logged during a failing test to its report.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ..ports import free_port
from ..processes import ManagedProcess
from ..repo import BIN

ETCD = BIN / "etcd"
KUBE_APISERVER = BIN / "kube-apiserver"

#: The admission plugins a kubeadm cluster runs: kube-apiserver's default set for this version (see
#: `kube-apiserver --help`, --enable-admission-plugins) plus NodeRestriction, which kubeadm adds. They
#: are listed in full so the set is visible here; the server reports which it loaded (`admission_plugins`).
ADMISSION_PLUGINS = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PodGroupProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "PodTopologyLabels",
    "NodeDeclaredFeatureValidator",
    "PodResizeValidator",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "NodeRestriction",
)

#: Every request at Metadata level (who did what to which object, with the admission annotations such as
#: PodSecurity's audit violations), without the RequestReceived copy of each event.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

#: If pytest itself is killed (no fixture teardown), the kernel kills etcd and kube-apiserver too
#: (util-linux's setpriv sets the parent-death signal, then execs them). SIGKILL: the data is throwaway,
#: and a kube-apiserver told to stop gracefully while its etcd stops too hangs in its shutdown.
_ORPHAN_GUARD = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


class ControlPlaneError(RuntimeError):
    pass


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def _ec_key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path.name, cwd=path.parent)
    path.chmod(0o600)


def _signed_cert(pki: Path, name: str, subject: str, extensions: str) -> None:
    """`name`.key and `name`.crt signed by pki/ca, with the given X.509 v3 extensions."""
    _ec_key(pki / f"{name}.key")
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    (pki / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
        cwd=pki,
    )  # fmt: skip


@dataclass
class Timings:
    certificates: float = 0.0
    etcd: float = 0.0
    apiserver: float = 0.0
    total: float = 0.0
    stop: float = 0.0


@dataclass
class ControlPlane:
    workdir: Path
    timings: Timings = field(default_factory=Timings)
    etcd: ManagedProcess | None = None
    apiserver: ManagedProcess | None = None
    port: int = 0
    etcd_port: int = 0
    #: Where kube-apiserver binds and what it advertises (the `kubernetes` Service's endpoint).
    address: str = "127.0.0.1"
    service_cidr: str = "10.96.0.0/12"
    apiserver_args: Sequence[str] = ()
    detach: bool = False

    def __post_init__(self) -> None:
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.audit_log = self.logs / "audit.log"

    # ------------------------------------------------------------------ paths and client settings

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def client_cert(self) -> tuple[str, str]:
        return str(self.pki / "admin.crt"), str(self.pki / "admin.key")

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 90.0) -> None:
        started = time.monotonic()
        if not (self.pki / "sa.pub").exists():
            self.make_pki()
        self.timings.certificates = time.monotonic() - started
        guard = [] if self.detach else _ORPHAN_GUARD
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.workdir / "audit-policy.yaml").write_text(AUDIT_POLICY)

        mark = time.monotonic()
        self.etcd_port, peer_port = free_port(), free_port()
        self.etcd = ManagedProcess(
            "etcd",
            [
                *guard,
                str(ETCD),
                "--name", "test",
                "--data-dir", str(self.workdir / "etcd-data"),
                "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"test=http://127.0.0.1:{peer_port}",
                # Throwaway data: no fsync (envtest does the same), warnings and errors only.
                "--unsafe-no-fsync",
                "--log-level", "warn",
            ],
            self.logs / "etcd.log",
            new_session=self.detach,
        )  # fmt: skip
        self._wait(self.etcd, self._etcd_healthy, timeout, "etcd /health")
        self.timings.etcd = time.monotonic() - mark

        mark = time.monotonic()
        self.port = free_port()
        pki = self.pki
        self.apiserver = ManagedProcess(
            "kube-apiserver",
            [
                *guard,
                str(KUBE_APISERVER),
                "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
                "--bind-address", self.address,
                "--advertise-address", self.address,
                "--secure-port", str(self.port),
                # 1.37 refuses a loopback advertise address for the `kubernetes` Service endpoints;
                # without a node nothing needs them (no kube-proxy or pod reaches the API through them).
                *(["--endpoint-reconciler-type", "none"] if self.address == "127.0.0.1" else []),
                "--cert-dir", str(self.workdir / "apiserver-certs"),
                "--tls-cert-file", str(pki / "apiserver.crt"),
                "--tls-private-key-file", str(pki / "apiserver.key"),
                "--client-ca-file", str(pki / "ca.crt"),
                "--service-account-issuer", SERVICE_ACCOUNT_ISSUER,
                "--service-account-key-file", str(pki / "sa.pub"),
                "--service-account-signing-key-file", str(pki / "sa.key"),
                "--service-cluster-ip-range", self.service_cidr,
                "--authorization-mode", "Node,RBAC",
                "--enable-admission-plugins", ",".join(ADMISSION_PLUGINS),
                # As in real clusters: privileged pods are allowed by the server and refused (or not) by
                # PodSecurity per namespace, so a refusal seen in the tests is PodSecurity's.
                "--allow-privileged=true",
                "--audit-policy-file", str(self.workdir / "audit-policy.yaml"),
                "--audit-log-path", str(self.audit_log),
                "--audit-log-format", "json",
                "--profiling=false",
                *self.apiserver_args,
            ],
            self.logs / "kube-apiserver.log",
            new_session=self.detach,
        )  # fmt: skip
        self._write_kubeconfig()
        self._wait(self.apiserver, self._apiserver_ready, timeout, "kube-apiserver /readyz")
        self.timings.apiserver = time.monotonic() - mark
        self.timings.total = time.monotonic() - started

    def stop(self) -> None:
        started = time.monotonic()
        # The API server first: it would log etcd connection errors while shutting down otherwise.
        for proc in (self.apiserver, self.etcd):
            if proc is not None and proc.running():
                proc.stop(timeout=20)
        if self.etcd is not None or self.apiserver is not None:
            self.timings.stop = time.monotonic() - started

    # ------------------------------------------------------------------ setup helpers

    def make_pki(self) -> None:
        """The CA, the API server's serving certificate, the admin client certificate and the service-account
        key pair (called by `start()` unless already done, so that more certificates can be issued first)."""
        pki = self.pki
        pki.mkdir(parents=True, exist_ok=True)
        _ec_key(pki / "ca.key")
        _openssl(
            "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=wp-k8s-service-test-ca", "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", "ca.crt",
            cwd=pki,
        )  # fmt: skip
        _signed_cert(
            pki,
            "apiserver",
            "/CN=kube-apiserver",
            f"subjectAltName=IP:127.0.0.1,IP:{self.address},IP:{self.kubernetes_service_ip},"
            "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
            "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        )
        # system:masters: cluster-admin through the bootstrap RBAC binding, as kubeadm's admin.conf.
        _signed_cert(
            pki,
            "admin",
            "/O=system:masters/CN=wp-k8s-service-test-admin",
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
        )
        _ec_key(pki / "sa.key")
        _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)

    @property
    def kubernetes_service_ip(self) -> str:
        """The ClusterIP of the `kubernetes` Service: the first address of the service range."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    def issue_certificate(self, name: str, subject: str, *, server_names: Sequence[str] = ()) -> tuple[Path, Path]:
        """A certificate `name`.crt/.key signed by the cluster CA (after `make_pki()`): a client certificate
        (subject e.g. `/O=system:nodes/CN=system:node:x`), and a serving one too when `server_names` (IP
        addresses or DNS names) are given."""
        usage = "clientAuth"
        extensions = ""
        if server_names:
            usage = "serverAuth,clientAuth"
            sans = [f"IP:{n}" if _is_ip(n) else f"DNS:{n}" for n in server_names]
            extensions = f"subjectAltName={','.join(sans)}\n"
        _signed_cert(
            self.pki,
            name,
            subject,
            extensions + f"extendedKeyUsage={usage}\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        )
        return self.pki / f"{name}.crt", self.pki / f"{name}.key"

    def write_kubeconfig(self, path: Path, cert: Path, key: Path) -> Path:
        """A kubeconfig for this API server with the given client certificate."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "test", "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}
            ],
            "users": [{"name": "user", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user"}}],
            "current-context": "test",
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def _write_kubeconfig(self) -> None:
        cert, key = self.client_cert
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "test", "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}
            ],
            "users": [{"name": "admin", "user": {"client-certificate": cert, "client-key": key}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
            "current-context": "test",
        }
        # JSON is YAML. 0600: helm warns about a group- or world-readable kubeconfig.
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def _etcd_healthy(self) -> bool:
        try:
            reply = requests.get(f"http://127.0.0.1:{self.etcd_port}/health", timeout=1)
        except requests.RequestException:
            return False
        return reply.ok and reply.json().get("health") == "true"

    def _apiserver_ready(self) -> bool:
        try:
            reply = requests.get(f"{self.server}/readyz", verify=str(self.ca_file), cert=self.client_cert, timeout=2)
        except requests.RequestException:
            return False
        return reply.status_code == 200

    def _wait(self, proc: ManagedProcess, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not proc.running():
                raise ControlPlaneError(
                    f"{proc.name} exited with code {proc.process.returncode} before {what} answered:\n"
                    + _tail(proc.log_path, 40)
                )
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{what} not ready after {timeout}s:\n" + _tail(proc.log_path, 40))
            time.sleep(0.1)

    # ------------------------------------------------------------------ what the server reports

    def admission_plugins(self) -> dict[str, list[str]]:
        """The admission plugins the server loaded, as it logs them: {"mutating": [...], "validating": [...]}."""
        text = (self.logs / "kube-apiserver.log").read_text(errors="replace")
        found = {}
        for kind in ("mutating", "validating"):
            m = re.search(
                rf"Loaded \d+ {kind} admission controller\(s\) successfully in the following order: ([^.]*)\.", text
            )
            found[kind] = m.group(1).split(",") if m else []
        return found

    # ------------------------------------------------------------------ logs

    def log_files(self) -> dict[str, Path]:
        return {
            "kube-apiserver": self.logs / "kube-apiserver.log",
            "etcd": self.logs / "etcd.log",
            "audit": self.audit_log,
        }

    def log_offsets(self) -> dict[str, int]:
        return {name: path.stat().st_size if path.exists() else 0 for name, path in self.log_files().items()}

    def logs_since(self, offsets: dict[str, int], max_lines: int = 150) -> dict[str, str]:
        """What each log got since `offsets` (the last `max_lines` lines; the audit log summarised)."""
        out = {}
        for name, path in self.log_files().items():
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(offsets.get(name, 0))
                lines = f.read().decode(errors="replace").splitlines()
            if name == "audit":
                lines = [s for s in map(_audit_summary, lines) if s]
            if len(lines) > max_lines:
                lines = [f"... {len(lines) - max_lines} earlier lines in {path}", *lines[-max_lines:]]
            if lines:
                out[name] = "\n".join(lines)
        return out

    def audit_events(self, since: int = 0) -> Iterator[dict[str, Any]]:
        """Audit events (ResponseComplete/Panic) written after byte offset `since` of the audit log."""
        with self.audit_log.open("rb") as f:
            f.seek(since)
            for line in f:
                if line.strip():
                    yield json.loads(line)


def _audit_summary(line: str) -> str:
    """One line per request; the API server's own requests (bootstrap, leases) are left out."""
    try:
        event = json.loads(line)
    except ValueError:
        return line
    if event.get("user", {}).get("username") == "system:apiserver":
        return ""
    ref = event.get("objectRef") or {}
    where = "/".join(p for p in (ref.get("namespace"), ref.get("resource"), ref.get("name")) if p)
    status = (event.get("responseStatus") or {}).get("code")
    notes = {k: v for k, v in (event.get("annotations") or {}).items() if not k.startswith("authorization.k8s.io/")}
    return f"{event.get('verb')} {where or event.get('requestURI')} -> {status} ({event.get('userAgent', '')[:30]}){' ' + json.dumps(notes) if notes else ''}"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _tail(path: Path, lines: int) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
