"""Labels and selectors: the standard labels on every object, and every Service and
PodDisruptionBudget selecting exactly its own Deployment's pods."""

from __future__ import annotations

from typing import Any

import pytest

from wp_devsupport.chart import ALL_SCENARIOS, RELEASE, all_containers, find_all, pod_labels, pod_spec, render_scenario

STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)


def _workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "Pod")]


@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
class TestLabelsAndSelectors:
    def test_every_object_has_the_standard_labels(self, scenario: str) -> None:
        for obj in render_scenario(scenario):
            labels = obj["metadata"]["labels"]
            for key in STANDARD_LABELS:
                assert labels.get(key), f"{obj['kind']}/{obj['metadata']['name']} lacks {key}"
            assert labels["app.kubernetes.io/instance"] == RELEASE

    def test_workloads_have_a_component_their_selector_matches(self, scenario: str) -> None:
        for workload in _workloads(render_scenario(scenario)):
            component = pod_labels(workload)["app.kubernetes.io/component"]
            assert component in ("api", "worker", "redis", "test")
            if workload["kind"] == "Deployment":
                assert workload["spec"]["selector"]["matchLabels"].items() <= pod_labels(workload).items()

    def test_each_service_selects_one_deployment_and_its_ports(self, scenario: str) -> None:
        objects = render_scenario(scenario)
        workloads = _workloads(objects)
        for service in find_all(objects, "Service"):
            selected = [
                w
                for w in workloads
                if service["spec"]["selector"].items() <= pod_labels(w).items() and w["kind"] == "Deployment"
            ]
            assert len(selected) == 1, f"Service {service['metadata']['name']} selects {len(selected)} Deployments"
            ports = {p["name"] for c in all_containers(pod_spec(selected[0])) for p in c.get("ports", [])}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports

    def test_each_pod_disruption_budget_selects_one_deployment(self, scenario: str) -> None:
        objects = render_scenario(scenario)
        workloads = _workloads(objects)
        for pdb in find_all(objects, "PodDisruptionBudget"):
            selected = [w for w in workloads if pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(w).items()]
            assert [w["kind"] for w in selected] == ["Deployment"]
