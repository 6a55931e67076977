"""`helm test` and the release notes: the test pod sends a ping through the queue with the worker's
Redis settings; NOTES.txt says what was installed without showing a secret."""

from __future__ import annotations

import base64
import json
import tempfile
from typing import Any

import pytest

from wp_devsupport.chart import (
    FULLNAME,
    NAMESPACE,
    RELEASE,
    all_containers,
    default_values,
    env_values,
    find,
    find_all,
    pod_specs,
    render_chart,
    render_scenario,
    run_helm,
    with_values,
)


class TestTestPod:
    @pytest.mark.parametrize("scenario", ["defaults", "existing-secret", "embedded-redis", "worker-deployment-keda"])
    def test_probes_the_queue(self, scenario: str) -> None:
        objects = render_scenario(scenario)
        pod = find(objects, "Pod")
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        spec = pod["spec"]
        (probe,) = spec["containers"]
        assert probe["image"] == "ghcr.io/wp-k8s-service/worker:0.1.0"
        assert probe["command"] + probe["args"] == ["python", "-m", "worker_app.probe", "--timeout", "60"]
        assert spec["restartPolicy"] == "Never"
        assert spec["activeDeadlineSeconds"] > 60
        workers = [c for _, s in pod_specs(objects) for c in all_containers(s) if c["name"] == "worker"]
        redis = lambda c: [e for e in c["env"] if e["name"].startswith("REDIS_")]  # noqa: E731
        assert redis(probe) == redis(workers[0])

    def test_can_be_turned_off(self) -> None:
        objects = render_chart(with_values({"tests": {"enabled": False}}))
        assert not find_all(objects, "Pod")

    def test_off_is_needed_when_no_worker_consumes_ping(self) -> None:
        """tests/chart/test_values.py: with tests on, dropping `ping` from worker.queues is refused."""
        objects = render_chart(with_values({"tests": {"enabled": False}, "worker": {"queues": ["clone-queue"]}}))
        assert not find_all(objects, "Pod")
        worker = next(c for _, s in pod_specs(objects) for c in all_containers(s) if c["name"] == "worker")
        assert env_values(worker)["WORKER_QUEUES"] == "clone-queue"


def _notes(values: dict[str, Any]) -> str:
    """helm install --dry-run=client renders NOTES.txt (Helm 4; Helm 3 wants a cluster for it)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        json.dump(values, handle)
        handle.flush()
        output = run_helm(
            [
                "install",
                RELEASE,
                "chart",
                "--dry-run=client",
                "-n",
                NAMESPACE,
                "-f",
                handle.name,
            ]
        )
    return output.split("NOTES:", 1)[1]


class TestNotes:
    def test_say_what_was_installed_without_secrets(self) -> None:
        values = with_values({"redis": {**default_values()["redis"], "password": "n0t-in-the-notes"}})
        notes = _notes(values)
        assert "n0t-in-the-notes" not in notes
        assert base64.b64encode(b"n0t-in-the-notes").decode() not in notes
        for expected in (
            f"Deployment/{FULLNAME}",
            "sidecar container",
            "helm test",
            "clone-queue, ping",
            f"kubectl -n {NAMESPACE} get secret {FULLNAME}-redis",
        ):
            assert expected in notes, notes

    def test_name_the_objects_as_the_chart_names_them(self) -> None:
        """The name helpers truncate to 63 characters: the notes must not build names of their own."""
        values = with_values(
            {
                "fullnameOverride": "a-rather-long-release-name-for-the-wordpress-cloning-api-x",
                "worker": {"mode": "deployment", "keda": {"enabled": True, "skipApiCheck": True}},
                "serviceMonitor": {"enabled": True, "skipApiCheck": True},
            }
        )
        objects = render_chart(values)
        worker = next(
            d
            for d in find_all(objects, "Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
        )
        (metrics,) = [s for s in find_all(objects, "Service") if s["spec"].get("clusterIP") == "None"]
        names = {
            "worker": worker["metadata"]["name"],
            "metrics": metrics["metadata"]["name"],
            "monitor": find(objects, "ServiceMonitor")["metadata"]["name"],
        }
        assert len(names["worker"]) == 63, "the test needs a name the helpers truncate"
        notes = _notes(values)
        assert f"Deployment/{names['worker']} (" in notes
        assert f"Service/{names['metrics']} port" in notes
        assert f"ServiceMonitor/{names['monitor']} in namespace" in notes
        assert f"rollout status deployment/{names['worker']}\n" in notes
        assert f"logs deployment/{names['worker']} -c worker" in notes
        assert "ready, running and delayed jobs of clone-queue, ping" in notes
