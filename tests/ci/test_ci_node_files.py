"""The local node's image inputs, without Docker or a node: ci/node/images.sh (shellcheck, its constants
and normalized names agree with wp_devsupport.node_images), ci/node/node-values.yaml rendered on top of
ci/kind/kind-values.yaml (every image one the node imports, never pulled) and the collector manifest
with the local collector image (only the image changes)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from wp_devsupport.chart import (
    KUBE_VERSIONS,
    all_containers,
    container,
    find,
    kube_schemas,
    load_documents,
    pod_spec,
    pod_specs,
    render_chart_text,
    root_chart_copy,
)
from wp_devsupport.ci_files import (
    KIND_VALUES,
    SUBCHART,
    collector_objects,
    run,
    script_setting,
    shellcheck,
    tools_version,
)
from wp_devsupport.image import parse_key_values
from wp_devsupport.node_images import (
    API_IMAGE,
    IMAGES,
    IMAGES_SCRIPT,
    NODE_VALUES,
    OTELCOL_IMAGE,
    PAUSE_IMAGE,
    REDIS_IMAGE,
    WORKER_IMAGE,
    collector_manifest,
    normalized,
)
from wp_devsupport.pod_security import restricted_container_problems, restricted_pod_problems
from wp_devsupport.repo import REPO

RELEASE = script_setting("RELEASE")
NAMESPACE = script_setting("NAMESPACE")


# ----------------------------------------------------------------------------- ci/node/images.sh
def test_images_script_is_shellcheck_clean() -> None:
    result = run([shellcheck(), "--norc", "--severity=style", str(IMAGES_SCRIPT)], cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert run(["bash", "-n", str(IMAGES_SCRIPT)]).returncode == 0


@pytest.mark.parametrize("name", list(IMAGES))
def test_script_and_python_constants_agree(name: str) -> None:
    assert script_setting(f"{name.upper()}_IMAGE", IMAGES_SCRIPT) == IMAGES[name]


def test_kind_tags_are_the_kind_jobs() -> None:
    assert script_setting("WORKER_IMAGE") == WORKER_IMAGE
    assert script_setting("API_IMAGE") == API_IMAGE


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("wp-k8s-service-worker:kind", "docker.io/library/wp-k8s-service-worker:kind"),
        ("redis", "docker.io/library/redis:latest"),
        ("otel/opentelemetry-collector:0.161.0", "docker.io/otel/opentelemetry-collector:0.161.0"),
        ("localhost/wp-k8s-service/pause:3.10", "localhost/wp-k8s-service/pause:3.10"),
        ("localhost:5000/a/b", "localhost:5000/a/b:latest"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        ("docker.io/library/redis:7.4.6-alpine", "docker.io/library/redis:7.4.6-alpine"),
    ],
)
def test_normalization_is_dockers(reference: str, expected: str) -> None:
    assert normalized(reference) == expected


def test_script_names_are_the_normalized_references() -> None:
    """`images.sh names` (its bash normalization, used to check an import) agrees with the Python one."""
    result = run(["bash", str(IMAGES_SCRIPT), "names"], cwd=REPO)
    assert result.returncode == 0, result.stderr
    pairs = parse_key_values(result.stdout)
    for name, reference in IMAGES.items():
        assert pairs[f"{name}_image"] == reference
        assert pairs[f"{name}_normalized"] == normalized(reference)


def test_script_rejects_bad_usage_with_one_line_errors() -> None:
    for args, message in (
        (["frobnicate"], "unknown command: frobnicate"),
        (["build", "nginx"], "unknown image: nginx"),
        (["import"], "import needs --address SOCKET"),
        (["import", "--address", "/nonexistent.sock"], "no containerd socket at /nonexistent.sock"),
    ):
        result = run(["bash", str(IMAGES_SCRIPT), *args], cwd=REPO)
        assert result.returncode != 0
        assert result.stderr.strip().splitlines()[-1].startswith(f"[node-images] error: {message}"), result.stderr


def test_pause_is_the_kubernetes_sandbox_release_and_never_a_registry_name() -> None:
    name, _, tag = PAUSE_IMAGE.rpartition(":")
    assert name.startswith("localhost/"), "a name no registry answers for: it can only be the imported one"
    assert tag == "3.10"


def test_otelcol_image_is_the_release_bin_otelcol_is_built_from() -> None:
    assert f"v{OTELCOL_IMAGE.rpartition(':')[2]}" == tools_version("OTELCOL")


# ----------------------------------------------------------------------------- node-values.yaml
def _rendered() -> list[dict[str, Any]]:
    return load_documents(
        render_chart_text(
            helm="helm",
            kube_version=KUBE_VERSIONS[-1],
            chart=root_chart_copy(),
            values_files=[KIND_VALUES, NODE_VALUES],
            api_versions=("monitoring.coreos.com/v1",),
            release=RELEASE,
            namespace=NAMESPACE,
        )
    )


def test_node_values_only_swap_the_embedded_redis_image() -> None:
    values = yaml.safe_load(NODE_VALUES.read_text())
    assert values == {
        SUBCHART: {
            "embeddedRedis": {
                "image": {
                    "repository": REDIS_IMAGE.rpartition(":")[0],
                    "tag": REDIS_IMAGE.rpartition(":")[2],
                    "pullPolicy": "Never",
                }
            }
        }
    }


def test_every_image_on_the_node_is_imported_and_never_pulled() -> None:
    objects = _rendered()
    containers = [c for _, spec in pod_specs(objects) for c in all_containers(spec)]
    assert {c["image"] for c in containers} == {WORKER_IMAGE, API_IMAGE, REDIS_IMAGE}
    assert {c["imagePullPolicy"] for c in containers} == {"Never"}
    redis = find(objects, "Deployment", f"{RELEASE}-redis")
    assert container(pod_spec(redis), "redis")["image"] == REDIS_IMAGE


def test_node_values_render_valid_objects() -> None:
    schemas = kube_schemas(KUBE_VERSIONS[-1])
    problems = [str(p) for obj in _rendered() for p in schemas.problems(obj)]
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- collector manifest
def test_node_collector_manifest_changes_only_the_image() -> None:
    original = collector_objects()
    local = [doc for doc in yaml.safe_load_all(collector_manifest()) if doc]
    assert [o["kind"] for o in local] == [o["kind"] for o in original]
    deployment = find(local, "Deployment")
    collector = container(pod_spec(deployment), "otel-collector")
    assert collector["image"] == OTELCOL_IMAGE
    assert collector["imagePullPolicy"] == "Never"
    collector["image"] = container(pod_spec(find(original, "Deployment")), "otel-collector")["image"]
    collector["imagePullPolicy"] = "IfNotPresent"
    assert local == original
    spec = pod_spec(find([doc for doc in yaml.safe_load_all(collector_manifest()) if doc], "Deployment"))
    problems = restricted_pod_problems("collector", spec)
    for ctr in all_containers(spec):
        problems += restricted_container_problems(ctr["name"], ctr, spec.get("securityContext", {}))
    assert not problems, problems
