"""OpenTelemetry: the SDK environment of the API and worker containers (service names, resource
attributes from the downward API, sampler, exporter)."""

from __future__ import annotations

import re

import pytest

from wp_devsupport.chart import (
    DOWNWARD_VARS,
    NAMESPACE,
    STAGING,
    all_containers,
    api_pod,
    container,
    env_values,
    pod_specs,
    render_scenario,
)


class TestOtelEnvironment:
    @pytest.mark.parametrize("scenario", ["defaults", "existing-secret", "worker-deployment-keda", STAGING])
    def test_api_and_worker_environment(self, scenario: str) -> None:
        objects = render_scenario(scenario)
        instance_ids = set()
        for _, spec in pod_specs(objects):
            for ctr in all_containers(spec):
                if ctr["name"] not in ("api", "worker"):
                    continue
                env = ctr["env"]
                names = [e["name"] for e in env]
                for var, field in DOWNWARD_VARS.items():
                    assert env[names.index(var)]["valueFrom"]["fieldRef"]["fieldPath"] == field
                attrs_at = names.index("OTEL_RESOURCE_ATTRIBUTES")
                attrs_text = env[attrs_at]["value"]
                # Kubernetes expands $(VAR) only for variables defined earlier in the list.
                for ref in re.findall(r"\$\((\w+)\)", attrs_text):
                    assert ref in names[:attrs_at], f"{ref} is not defined before OTEL_RESOURCE_ATTRIBUTES"
                attrs = dict(pair.split("=", 1) for pair in attrs_text.split(","))
                tag = ctr["image"].rsplit(":", 1)[1].split("@")[0]
                assert attrs["service.version"] == tag
                assert attrs["k8s.pod.name"] == "$(POD_NAME)"
                assert attrs["k8s.namespace.name"] == "$(POD_NAMESPACE)"
                assert attrs["k8s.node.name"] == "$(NODE_NAME)"
                assert attrs["service.instance.id"] == f"$(POD_NAMESPACE).$(POD_NAME).{ctr['name']}"
                assert attrs["deployment.environment"]
                instance_ids.add((spec.get("hostname"), attrs["service.instance.id"]))
                values = env_values(ctr)
                assert (
                    values["OTEL_SERVICE_NAME"]
                    == {"api": "wp-k8s-service", "worker": "wp-k8s-service-worker"}[ctr["name"]]
                )
                assert values["DRAMATIQ_SERVICE_NAME"] == values["OTEL_SERVICE_NAME"], "the setup guide's variable"
                assert values["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
                assert values["OTEL_SDK_DISABLED"] == "false"
        assert len(instance_ids) == 2, "service.instance.id must differ between the API and the worker"

    def test_sampler_and_extra_attributes(self) -> None:
        worker = container(api_pod(render_scenario("existing-secret")), "worker")
        env = env_values(worker)
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
        assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
        attrs = env["OTEL_RESOURCE_ATTRIBUTES"].split(",")
        assert {"deployment.environment=production", "team=platform", "cloud.region=eu-west-1"} <= set(attrs)

    def test_defaults(self) -> None:
        defaults = env_values(container(api_pod(render_scenario("defaults")), "worker"))
        assert "OTEL_TRACES_SAMPLER_ARG" not in defaults
        assert f"deployment.environment={NAMESPACE}" in defaults["OTEL_RESOURCE_ATTRIBUTES"].split(",")
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in defaults
