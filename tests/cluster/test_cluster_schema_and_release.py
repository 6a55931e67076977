"""What never reaches the server: values the schema refuses, and the checkout (kept out of the
environment chart, and so of its release record, by the root .helmignore)."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from wp_devsupport.chart import HELMS, root_chart_copy
from wp_devsupport.cluster.support import (
    SECRET_SIZE_LIMIT,
    Cluster,
    Namespace,
    create_existing_secrets,
    decode_release,
    helm_install,
    release_secrets,
    scenarios,
    write_requests,
)

pytestmark = pytest.mark.integration

SCENARIOS = scenarios()

#: case -> (scenario, --set, what the schema says)
BAD_VALUES = {
    "enum": ("defaults", "worker.mode=banana", "at '/worker/mode': value must be one of 'sidecar', 'deployment'"),
    "type": ("defaults", "redis.port=six-three-seven-nine", "at '/redis/port': got string, want integer"),
    "unknown-key": ("defaults", "redis.hots=redis.example", "at '/redis': additional properties 'hots' not allowed"),
    "root-chart": (
        "staging",
        "wp-k8s-service.worker.mode=banana",
        "at '/worker/mode': value must be one of 'sidecar', 'deployment'",
    ),
}


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_value_is_refused_before_anything_reaches_the_server(
    cluster: Cluster, namespace: Namespace, case: str, helm: str
) -> None:
    kube, plane, ns = cluster.kube, cluster.control_plane, namespace.name
    scenario_name, setting, message = BAD_VALUES[case]
    scenario = SCENARIOS[scenario_name]
    release = scenario.release or cluster.unique("wp")
    since = plane.log_offsets()["audit"]

    run = helm_install(cluster, scenario, ns, release, helm, extra=("--set", setting), check=False)
    assert run.returncode != 0, run.output
    assert "values don't meet the specifications of the schema(s)" in run.stderr, run.output
    assert message in run.stderr, run.output

    # helm did talk to the server (it looks up the release history first)...
    helm_agent = "Helm/"
    seen = [e for e in plane.audit_events(since) if e.get("userAgent", "").startswith(helm_agent)]
    assert any((e.get("objectRef") or {}).get("namespace") == ns for e in seen), "no helm request was audited"
    # ...but wrote nothing, and the namespace holds no object of any type.
    assert write_requests(plane, since, ns, helm_agent) == []
    assert release_secrets(kube, release, ns) == []
    for resource in kube.listable_resources():
        if resource.namespaced:
            assert kube.list(resource, ns) == [], f"{resource.plural} in {ns}"


def _add_checkout_stand_in(root: Path) -> None:
    """What sits next to Chart.yaml in the real checkout: sources, tests, tools and a virtualenv (2 MiB
    of incompressible data here, so a release record holding it would break Secret's 1 MiB limit)."""
    for name in (
        "worker_app/app.py",
        "tests/chart/test_render.py",
        "ci/tools.sh",
        "README.md",
        "Makefile",
        "pyproject.toml",
    ):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# stand-in\n")
    venv = root / ".venv" / "lib" / "blob.bin"
    venv.parent.mkdir(parents=True)
    venv.write_bytes(os.urandom(2 * 1024 * 1024))


def test_release_record_of_the_environment_chart_stays_small(
    cluster: Cluster, namespace: Namespace, tmp_path: Path
) -> None:
    kube, ns = cluster.kube, namespace.name
    scenario = SCENARIOS["staging"]
    root = tmp_path / "checkout"
    shutil.copytree(root_chart_copy(), root)
    _add_checkout_stand_in(root)
    create_existing_secrets(kube, ns, scenario.chart_values())

    helm_install(cluster, scenario, ns, "wp-k8s-service", chart=root)
    (stored,) = release_secrets(kube, "wp-k8s-service", ns)
    size = len(base64.b64decode(stored["data"]["release"]))
    record = decode_release(stored)
    chart = record["chart"]
    assert sorted(f["name"] for f in chart.get("files") or []) == ["values-staging.yaml"]
    assert sorted(t["name"] for t in chart.get("templates") or []) == ["templates/NOTES.txt"]
    # Helm does not store the dependency's files in the record (only the rendered manifest): a few KiB.
    assert size < SECRET_SIZE_LIMIT // 32, f"release record is {size} bytes"
    print(f"release record of the environment chart: {size} bytes")

    # Without the root .helmignore the same install is refused: the record would not fit in a Secret.
    (root / ".helmignore").unlink()
    run = helm_install(cluster, scenario, ns, "wp-k8s-service-unignored", chart=root, check=False)
    assert run.returncode != 0, run.output
    assert "Too long" in run.stderr, run.output
