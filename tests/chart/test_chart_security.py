"""Pod security: every pod meets the "restricted" Pod Security Standard, runs as the image's user and
gets no ServiceAccount token."""

from __future__ import annotations

import pytest

from wp_devsupport.chart import ALL_SCENARIOS, all_containers, container, find, pod_specs, render_scenario, worker_pod
from wp_devsupport.pod_security import restricted_container_problems, restricted_pod_problems


class TestPodSecurity:
    @pytest.mark.parametrize("scenario", ALL_SCENARIOS)
    def test_every_pod_meets_pod_security_restricted(self, scenario: str) -> None:
        """The "restricted" Pod Security Standard, checked field by field, plus read-only root
        filesystems and resource requests/limits on every container the chart defines."""
        problems = []
        for where, spec in pod_specs(render_scenario(scenario)):
            problems += restricted_pod_problems(where, spec)
            for ctr in all_containers(spec):
                name = f"{where}/{ctr['name']}"
                problems += restricted_container_problems(name, ctr, spec.get("securityContext", {}))
                resources = ctr.get("resources", {})
                # wait-for-config is the native-sidecar scenario's own extra init container.
                if ctr["name"] != "wait-for-config" and not (resources.get("requests") and resources.get("limits")):
                    problems.append(f"{name}: no resource requests and limits")
        assert not problems, "\n".join(problems)

    def test_worker_runs_as_the_image_user(self) -> None:
        objects = render_scenario("worker-deployment-keda")
        spec = worker_pod(objects)
        sc = container(spec, "worker")["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"]) == (10001, 10001)
        assert spec["securityContext"]["fsGroup"] == 10001


class TestServiceAccount:
    def test_token_is_not_mounted(self) -> None:
        objects = render_scenario("defaults")
        account = find(objects, "ServiceAccount")
        assert account["automountServiceAccountToken"] is False
        for _, spec in pod_specs(objects):
            assert spec["serviceAccountName"] == account["metadata"]["name"]
            assert spec["enableServiceLinks"] is False
