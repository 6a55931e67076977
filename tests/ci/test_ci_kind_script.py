"""ci/kind/kind-e2e.sh and ci/kind/build-api-image.sh: syntax, shellcheck, and the e2e script's control
flow run from start to end against fake kind/kubectl/helm/docker/curl (kind cannot run here).

The fakes (fake_cluster_tools.py) record every call, so these tests see what the script would ask
of a real cluster, in which order, with which files; what it prints when a step fails; and that
it tears down what it created (and only that). Whether a real cluster then does the right thing is
only known in users' CI (the `kind` job of .github/workflows/ci.yaml).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from wp_devsupport.ci_files import KIND_E2E, REPO, SCRIPTS, run, shellcheck

FAKE_PY = Path(__file__).with_name("fake_cluster_tools.py")
FAKE_SH = Path(__file__).with_name("fake_cluster_tools.sh")
FAKED = ("kind", "kubectl", "helm", "docker", "curl")
CLUSTER = "wp-k8s-service-e2e"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script: Path) -> None:
    result = run(["bash", "-n", str(script)])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", [*SCRIPTS, FAKE_SH], ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    result = run([shellcheck(), "--norc", "--severity=style", str(script)], cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_strict_mode_and_executable(script: Path) -> None:
    assert "set -euo pipefail" in script.read_text()
    assert os.access(script, os.X_OK), f"{script} is not executable"


# ----------------------------------------------------------------------------- fake cluster runs


@dataclass
class Run:
    status: int
    stderr: str
    stdout: str
    calls: list[list[str]]
    artifacts: Path

    def called(self, *prefix: str) -> list[list[str]]:
        """Calls whose tool and first arguments (after --context/--kube-context X) match `prefix`."""
        found = []
        for call in self.calls:
            plain = [call[0], *_without_context(call[1:])]
            if plain[: len(prefix)] == list(prefix):
                found.append(call)
        return found

    def index(self, *prefix: str) -> int:
        for number, call in enumerate(self.calls):
            if [call[0], *_without_context(call[1:])][: len(prefix)] == list(prefix):
                return number
        raise AssertionError(f"never called: {' '.join(prefix)}\n{self.stderr[-4000:]}")


def _without_context(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--context", "--kube-context"):
            skip = True
        else:
            out.append(arg)
    return out


#: Scenario name -> environment of one run of ci/kind/kind-e2e.sh against the fakes.
SCENARIOS: dict[str, dict[str, str]] = {
    "happy": {},
    "helm-upgrade-fails": {"FAKE_FAIL": "helm upgrade"},
    "keep": {"FAKE_FAIL": "helm test", "KEEP_CLUSTER": "1"},
    "reuse": {"KIND_CLUSTER": "mine", "FAKE_EXISTING_CLUSTERS": "other\nmine"},
    "clash": {"FAKE_EXISTING_CLUSTERS": CLUSTER},
    "broken-trace": {"FAKE_TRACES": "broken"},
    "counted-twice": {"FAKE_METRICS": "double"},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every scenario, run at the same time (each is mostly waiting on process start-up)."""
    base = tmp_path_factory.mktemp("kind-e2e-fakes")
    fake_bin = base / "bin"
    fake_bin.mkdir()
    for tool in FAKED:
        (fake_bin / tool).symlink_to(FAKE_SH)
    # The scripts' python3 (e2e_check.py, JSON fields): this interpreter without site-packages,
    # which is what they need (standard library only) and starts faster.
    (fake_bin / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "$@"\n')
    (fake_bin / "python3").chmod(0o755)
    crd_dir = base / "crds"
    crd_dir.mkdir()
    for crd in ("servicemonitors", "prometheusrules"):
        (crd_dir / f"monitoring.coreos.com_{crd}.yaml").write_text("# fake CRD\n")
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KIND_", "KEEP_", "E2E_", "FAKE_", "SKIP_", "NAMESPACE", "RELEASE", "CRD_DIR"))
    }
    started = {}
    for name, overrides in SCENARIOS.items():
        state = base / name
        state.mkdir()
        env = {
            **inherited,
            "PATH": f"{fake_bin}:{os.environ['PATH']}",
            "FAKE_STATE": str(state),
            "FAKE_PYTHON": sys.executable,
            "FAKE_PY": str(FAKE_PY),
            "ARTIFACTS_DIR": str(state / "artifacts"),
            "CRD_DIR": str(crd_dir),
            "SKIP_IMAGE_BUILD": "1",
            "E2E_WAIT_SECONDS": "1",
            **overrides,
        }
        process = subprocess.Popen(
            ["bash", str(KIND_E2E)], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started[name] = (process, state)
    results = {}
    for name, (process, state) in started.items():
        stdout, stderr = process.communicate(timeout=180)
        calls_file = state / "calls.log"
        calls = [line.split("\x1f") for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
        results[name] = Run(process.returncode, stderr, stdout, calls, state / "artifacts")
    return results


def test_happy_path_does_every_step_in_order_and_deletes_the_cluster(runs: dict[str, Run]) -> None:
    result = runs["happy"]
    assert result.status == 0, result.stderr[-6000:]
    assert "[kind-e2e] PASSED" in result.stderr
    context = f"kind-{CLUSTER}"

    create = result.called("kind", "create", "cluster")
    assert create == [
        ["kind", "create", "cluster", "--name", CLUSTER, "--config", "ci/kind/kind-config.yaml", "--wait", "180s"]
    ]
    assert result.called("kind", "load", "docker-image") == [
        ["kind", "load", "docker-image", "--name", CLUSTER, "wp-k8s-service-worker:kind", "wp-k8s-service-api:kind"]
    ]
    applied = [call[-1] for call in result.called("kubectl", "apply", "--server-side")]
    assert [Path(p).name for p in applied] == [
        "monitoring.coreos.com_servicemonitors.yaml",
        "monitoring.coreos.com_prometheusrules.yaml",
    ]
    assert result.called("kubectl", "apply", "-f", "ci/kind/otel-collector.yaml")
    assert result.called("helm", "dependency", "build", str(REPO))
    upgrade = result.called("helm", "upgrade", "--install")
    assert len(upgrade) == 1
    assert upgrade[0][:3] == ["helm", "--kube-context", context]
    assert upgrade[0][5:] == [
        "wp-k8s-service", str(REPO), "--namespace", "wp-k8s-service", "--values", "ci/kind/kind-values.yaml",
        "--wait", "--timeout", "6m",
    ]  # fmt: skip
    labels = result.called("kubectl", "label", "--overwrite", "namespace", "wp-k8s-service")
    assert labels
    assert "pod-security.kubernetes.io/enforce=restricted" in labels[0]
    assert result.called("helm", "test", "wp-k8s-service")
    forward = result.called("kubectl", "-n", "wp-k8s-service", "port-forward")
    assert forward
    assert forward[0][-3:] == ["deployment.apps/wp-k8s-service", "18000:8000", "19191:9191"]
    # Every kubectl/helm call targets the kind cluster's context, never the user's current one.
    for call in result.calls:
        if call[0] == "kubectl" and call[1:2] != ["version"]:
            assert call[1:3] == ["--context", context], call
        if call[0] == "helm" and call[1] not in ("version", "dependency"):
            assert call[1:3] == ["--kube-context", context], call

    order = [
        result.index("kind", "create", "cluster"),
        result.index("kind", "load", "docker-image"),
        result.index("kubectl", "apply", "--server-side"),
        result.index("kubectl", "apply", "-f", "ci/kind/otel-collector.yaml"),
        result.index("helm", "upgrade"),
        result.index("helm", "test"),
        result.index("kubectl", "-n", "wp-k8s-service", "port-forward"),
        result.index("curl", "-fsS", "-X", "POST"),
        result.index("kubectl", "-n", "observability", "logs"),
        result.index("kind", "delete", "cluster"),
    ]
    assert order == sorted(order), result.calls
    posts = result.called("curl", "-fsS", "-X", "POST")
    assert [p[-1].split("/", 3)[3].split("?")[0] for p in posts] == ["pings"] * 3 + ["clones"] * 2 + [
        "clones/scheduled"
    ]
    # The assertions ran and said so.
    assert result.stderr.count(": ok, trace ") == 6
    assert "{queue='ping', actor='ping', outcome='success'}: +3, expected +3: ok" in result.stderr
    assert "{queue='clone-queue', actor='clone_wordpress', outcome='failed'}: +3, expected +3: ok" in result.stderr
    assert (result.artifacts / "jobs.txt").read_text().count("\n") == 6
    assert "step timings:" in result.stderr


def test_a_failing_step_is_named_the_cluster_dumped_and_deleted(runs: dict[str, Run]) -> None:
    result = runs["helm-upgrade-fails"]
    assert result.status == 1
    assert "FAILED at step: helm upgrade --install wp-k8s-service . -f ci/kind/kind-values.yaml" in result.stderr
    # Diagnostics: helm status, events, pod descriptions and logs of both namespaces.
    assert result.called("helm", "status", "wp-k8s-service")
    assert result.called("kubectl", "get", "events", "-A", "--sort-by=.lastTimestamp")
    assert result.called("kubectl", "-n", "wp-k8s-service", "describe", "pods")
    assert result.called("kubectl", "-n", "observability", "logs")
    assert (result.artifacts / "diagnostics.txt").exists()
    assert result.called("kind", "delete", "cluster", "--name", CLUSTER)
    assert not result.called("helm", "test")


def test_keep_cluster_keeps_it(runs: dict[str, Run]) -> None:
    result = runs["keep"]
    assert result.status == 1
    assert "FAILED at step: helm test wp-k8s-service" in result.stderr
    assert not result.called("kind", "delete")
    assert f"keeping cluster {CLUSTER}" in result.stderr


def test_an_existing_cluster_is_reused_only_when_named_and_never_deleted(runs: dict[str, Run]) -> None:
    reused = runs["reuse"]
    assert reused.status == 0, reused.stderr[-4000:]
    assert not reused.called("kind", "create")
    assert not reused.called("kind", "delete")
    assert ["kubectl", "--context", "kind-mine", "cluster-info"] in reused.calls

    clash = runs["clash"]
    assert clash.status == 1
    assert f"reuse it with KIND_CLUSTER={CLUSTER}" in clash.stderr
    assert not clash.called("kind", "create")
    assert not clash.called("kind", "delete")


def test_a_trace_that_breaks_fails_with_the_report(runs: dict[str, Run]) -> None:
    result = runs["broken-trace"]
    assert result.status == 1
    assert "FAILED at step: every job traced: API request -> send -> process" in result.stderr
    assert "MISSING: consumer in trace" in result.stderr
    assert result.called("kind", "delete", "cluster")


def test_a_job_counted_twice_fails(runs: dict[str, Run]) -> None:
    result = runs["counted-twice"]
    assert result.status == 1
    assert "FAILED at step: every job processed exactly once" in result.stderr
    assert "TOO MANY" in result.stderr


def test_missing_tools_are_named_with_how_to_get_them(tmp_path: Path) -> None:
    only = tmp_path / "bin"
    only.mkdir()
    for tool in ("dirname",):
        (only / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    result = run(["/bin/bash", str(KIND_E2E)], env={"PATH": str(only), "HOME": str(tmp_path)}, cwd=REPO)
    assert result.returncode == 1
    assert "missing tools: kind kubectl helm docker curl python3" in result.stderr
    assert "go install sigs.k8s.io/kind@v0.33.0" in result.stderr
    assert "ci/tools.sh helm" in result.stderr
    assert "FAILED at step: checking the tools" in result.stderr


def test_an_unknown_cluster_provider_is_refused_in_one_line() -> None:
    result = run(["/bin/bash", str(KIND_E2E)], env={**os.environ, "CLUSTER_PROVIDER": "minikube"}, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip() == "[kind-e2e] error: CLUSTER_PROVIDER=minikube: expected kind or local"


def test_the_local_provider_needs_no_kind_but_containerd(tmp_path: Path) -> None:
    only = tmp_path / "bin"
    only.mkdir()
    for tool in ("dirname",):
        (only / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    env = {"PATH": str(only), "HOME": str(tmp_path), "CLUSTER_PROVIDER": "local"}
    result = run(["/bin/bash", str(KIND_E2E)], env=env, cwd=REPO)
    assert result.returncode == 1
    assert "missing tools: kubectl helm docker curl python3 ctr" in result.stderr
    assert "kind is not on PATH" not in result.stderr
