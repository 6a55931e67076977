"""What the rendered objects do: the worker and its environment (the README's tables), secrets, Pod
Security "restricted", OpenTelemetry wiring, modes, monitoring, network policies and the test hook."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest

from wp_devsupport.chart import (
    ALL_SCENARIOS,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    REPO,
    STAGING,
    all_containers,
    container,
    default_values,
    env_map,
    env_values,
    find,
    find_all,
    load_documents,
    pod_spec,
    pod_specs,
    render_chart,
    render_chart_text,
    render_scenario,
    run_helm,
)
from wp_devsupport.pod_security import restricted_container_problems, restricted_pod_problems

CONTRACT = (REPO / "README.md").read_text()
#: Environment variables the worker understands, from the configuration tables of the README.
CONTRACT_VARS = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", CONTRACT, flags=re.M))
#: Standard OpenTelemetry SDK variables and the downward-API helpers they reference.
OTEL_VARS = {
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
}
DOWNWARD_VARS = {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "NODE_NAME": "spec.nodeName"}
REDIS_VARS = ("REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_TLS")


def with_values(extra: dict[str, Any]) -> dict[str, Any]:
    values = default_values()
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def api_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return pod_spec(find(objects, "Deployment", FULLNAME))


def worker_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return pod_spec(find(objects, "Deployment", f"{FULLNAME}-worker"))


# ----------------------------------------------------------------------------- the worker


def test_worker_is_a_sidecar_of_the_api_by_default() -> None:
    objects = render_scenario("defaults")
    spec = api_pod(objects)
    assert [c["name"] for c in spec["containers"]] == ["api", "worker"]
    assert "initContainers" not in spec
    assert not [o for o in objects if o["metadata"]["name"] == f"{FULLNAME}-worker"]
    worker = container(spec, "worker")
    assert worker["image"] == "ghcr.io/wp-k8s-service/worker:0.1.0"
    assert "command" not in worker, "the image ENTRYPOINT runs the worker"
    assert "args" not in worker
    assert worker["ports"] == [{"name": "metrics", "containerPort": 9191, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert "readinessProbe" not in worker
    assert worker["resources"]["requests"]
    assert worker["resources"]["limits"]["memory"]


def test_worker_environment_follows_the_contract() -> None:
    worker = container(api_pod(render_scenario("defaults")), "worker")
    env = env_values(worker)
    unknown = set(env) - CONTRACT_VARS - OTEL_VARS - set(DOWNWARD_VARS)
    assert not unknown, f"variables the worker contract does not define: {unknown}"
    assert {"WORKER_SHUTDOWN_TIMEOUT", "PROMETHEUS_MULTIPROC_DIR", "REDIS_PASSWORD_FILE"} <= CONTRACT_VARS
    assert env["WORKER_QUEUES"] == "clone-queue,ping"
    assert env["WORKER_PROCESSES"] == "1"
    assert env["WORKER_THREADS"] == "8"
    assert env["WORKER_SHUTDOWN_TIMEOUT"] == "60"
    assert env["WORKER_TELEMETRY_FLUSH_TIMEOUT"] == "5"
    assert env["WORKER_TRACE_ARGUMENTS"] == "false"
    assert env["METRICS_PORT"] == "9191"
    assert env["PROMETHEUS_MULTIPROC_DIR"] == "/var/run/worker-metrics"
    assert (env["LOG_LEVEL"], env["LOG_FORMAT"]) == ("INFO", "json")
    assert env["REDIS_HOST"] == "redis-master.redis.svc.cluster.local"
    assert (env["REDIS_PORT"], env["REDIS_DB"], env["REDIS_TLS"]) == ("6379", "0", "false")
    assert env["REDIS_PASSWORD_FILE"] == "/var/run/secrets/wp-k8s-service/redis/password"
    assert "REDIS_PASSWORD" not in env
    assert "REDIS_URL" not in env


def test_worker_has_writable_tmp_and_metrics_dirs() -> None:
    spec = api_pod(render_scenario("defaults"))
    worker = container(spec, "worker")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in worker["volumeMounts"]}
    for path in ("/tmp", "/var/run/worker-metrics"):
        assert "emptyDir" in volumes[mounts[path]["name"]], path
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    password = mounts["/var/run/secrets/wp-k8s-service/redis"]
    assert password["readOnly"] is True
    secret = volumes[password["name"]]["secret"]
    assert secret["items"] == [{"key": "redis-password", "path": "password"}]
    assert secret["defaultMode"] == 0o440


def test_api_gets_the_same_redis_settings_as_the_worker() -> None:
    for scenario in ("defaults", "existing-secret", "embedded-redis"):
        spec = api_pod(render_scenario(scenario))
        api, worker = container(spec, "api"), container(spec, "worker")
        redis = lambda c: {k: v for k, v in env_map(c).items() if k.startswith("REDIS_")}  # noqa: E731
        assert redis(api) == redis(worker), scenario
        assert redis(api), scenario


def test_grace_period_covers_worker_shutdown() -> None:
    spec = api_pod(render_scenario("defaults"))
    env = env_values(container(spec, "worker"))
    budget = float(env["WORKER_SHUTDOWN_TIMEOUT"]) + float(env["WORKER_TELEMETRY_FLUSH_TIMEOUT"])
    assert spec["terminationGracePeriodSeconds"] > budget
    spec = worker_pod(render_scenario("worker-deployment-keda"))
    env = env_values(container(spec, "worker"))
    assert env["WORKER_SHUTDOWN_TIMEOUT"] == "300"
    assert spec["terminationGracePeriodSeconds"] == 330


def test_native_sidecar_mode() -> None:
    spec = api_pod(render_scenario("native-sidecar"))
    assert [c["name"] for c in spec["initContainers"]] == ["wait-for-config", "worker"]
    assert [c["name"] for c in spec["containers"]] == ["api"]
    worker = container(spec, "worker")
    assert worker["restartPolicy"] == "Always"
    assert worker["startupProbe"]["httpGet"]["port"] == "metrics"
    # The larger grace period of the two wins, so the worker keeps its shutdown window.
    assert spec["terminationGracePeriodSeconds"] == 120


def test_deployment_mode_with_keda() -> None:
    objects = render_scenario("worker-deployment-keda")
    api = api_pod(objects)
    assert [c["name"] for c in api["containers"]] == ["api"]
    deployment = find(objects, "Deployment", f"{FULLNAME}-worker")
    # KEDA owns the count; a first install (no live Deployment to look up) starts one worker even when
    # KEDA may scale to zero, so the release works before KEDA first acts.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    spec = pod_spec(deployment)
    worker = container(spec, "worker")
    assert worker["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert env_values(worker)["WORKER_PROCESSES"] == "2"
    assert "checksum/redis-secret" in deployment["spec"]["template"]["metadata"]["annotations"]

    scaled = find(objects, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 20)
    auth = find(objects, "TriggerAuthentication")
    triggers = scaled["spec"]["triggers"]
    assert sorted(t["metadata"]["listName"] for t in triggers) == ["dramatiq:clone-queue", "dramatiq:ping"]
    for trigger in triggers:
        assert trigger["type"] == "redis"
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        meta = trigger["metadata"]
        assert (meta["host"], meta["port"], meta["databaseIndex"]) == (
            "redis-master.redis.svc.cluster.local",
            "6379",
            "0",
        )
        assert (meta["listLength"], meta["activationListLength"]) == ("10", "1")
        assert "password" not in meta
    # KEDA reads the password from the same Secret key the worker mounts.
    (ref,) = auth["spec"]["secretTargetRef"]
    volume = next(v for v in spec["volumes"] if v["name"] == "redis-password")["secret"]
    assert (ref["parameter"], ref["name"], ref["key"]) == ("password", volume["secretName"], volume["items"][0]["key"])
    assert ref["name"] == "redis"


def test_api_autoscaling_starts_at_the_autoscaler_floor() -> None:
    # Later upgrades render the live count (a lookup; see tests/cluster), never a reset to 1.
    objects = render_scenario("worker-deployment-keda")
    hpa_floor = find(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"]
    assert find(objects, "Deployment", FULLNAME)["spec"]["replicas"] == hpa_floor
    hpa = find(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}


# ----------------------------------------------------------------------------- secrets


def _secret_literals(objects: list[dict[str, Any]]) -> set[str]:
    literals = set()
    for obj in find_all(objects, "Secret"):
        literals |= {base64.b64decode(v).decode() for v in obj.get("data", {}).values()}
        literals |= set(obj.get("stringData", {}).values())
    return {s for s in literals if s}


@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
def test_no_secret_literal_in_pod_specs(scenario: str) -> None:
    objects = render_scenario(scenario)
    secrets = _secret_literals(objects)
    for where, spec in pod_specs(objects):
        text = json.dumps(spec)
        for secret in secrets:
            assert secret not in text, f"{where} contains a Secret's value"
        for ctr in all_containers(spec):
            for item in ctr.get("env", []):
                if item["name"].endswith("_FILE"):
                    assert item.get("value", "/").startswith("/"), f"{where}/{ctr['name']}: {item['name']}"
                elif re.search(r"PASSWORD|SECRET|TOKEN|AUTH", item["name"]):
                    assert "value" not in item, f"{where}/{ctr['name']}: {item['name']} is a literal"


def test_a_password_from_values_only_lands_in_the_secret() -> None:
    password = "s3cr3t-value-from-values"
    objects = render_chart(with_values({"redis": {**default_values()["redis"], "password": password}}))
    holders = [
        o for o in objects if password in json.dumps(o) or base64.b64encode(password.encode()).decode() in json.dumps(o)
    ]
    assert [(o["kind"], o["metadata"]["name"]) for o in holders] == [("Secret", f"{FULLNAME}-redis")]


def test_managed_secret_password_is_generated() -> None:
    first = find(render_scenario("defaults"), "Secret")
    again = find(render_chart(default_values()), "Secret")
    password = base64.b64decode(again["data"]["redis-password"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
    assert again["data"] != first["data"], "helm template has no cluster to look the old password up in"
    assert first["metadata"].get("annotations") is None, "deleted with the release by default"
    kept = find(render_scenario("embedded-redis"), "Secret")
    assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_checksum_follows_the_secret() -> None:
    def checksums(extra_redis: dict[str, Any]) -> list[str]:
        objects = render_chart(with_values({"redis": {**default_values()["redis"], **extra_redis}}))
        return [
            d["spec"]["template"]["metadata"]["annotations"]["checksum/redis-secret"]
            for d in find_all(objects, "Deployment")
        ]

    one, same, other = checksums({"password": "one"}), checksums({"password": "one"}), checksums({"password": "two"})
    assert one == same
    assert one[0] != other[0]
    existing = checksums({"existingSecret": "redis"})
    assert existing != one
    assert existing != checksums({"existingSecret": "redis-2"})
    for digest in (*one, *other, *existing):
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        assert digest not in (hashlib.sha256(b"one").hexdigest(), hashlib.sha256(b"two").hexdigest())


def test_checksum_covers_the_secret_rendered_in_the_same_run() -> None:
    """The generated password is computed once per render: the checksum hashes the very Secret that
    is installed (the chart's checksum is sha256 of Helm's toJson of these parts)."""
    text = render_chart_text(default_values())
    (secret_doc,) = [d for d in text.split("\n---\n") if "# Source: wp-k8s-service/templates/redis-secret.yaml" in d]
    secret_text = secret_doc.split("\n", 1)[1]
    objects = load_documents(text)
    checksum = find(objects, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]
    candidates = set()
    for managed in (secret_text, "\n" + secret_text, "\n" + secret_text.rstrip("\n"), secret_text.rstrip("\n")):
        parts = {
            "ca": "",
            "caKey": "ca.crt",
            "key": "redis-password",
            "managed": managed,
            "secret": f"{FULLNAME}-redis",
        }
        encoded = json.dumps(parts, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        candidates.add(hashlib.sha256(encoded.encode()).hexdigest())
    assert checksum["checksum/redis-secret"] in candidates


def test_existing_secret_through_env_with_tls() -> None:
    objects = render_scenario("existing-secret")
    assert not find_all(objects, "Secret"), "no chart-managed Secret next to an existing one"
    spec = api_pod(objects)
    for name in ("api", "worker"):
        env = env_map(container(spec, name))
        assert env["REDIS_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "shared-redis", "key": "password"}}
        assert "REDIS_PASSWORD_FILE" not in env
        assert env["REDIS_TLS"]["value"] == "true"
        assert env["REDIS_USERNAME"]["value"] == "wp-worker"
        assert (env["REDIS_PORT"]["value"], env["REDIS_DB"]["value"]) == ("6380", "2")
        assert env["REDIS_TLS_CA_FILE"]["value"] == "/var/run/secrets/wp-k8s-service/redis-ca/ca.pem"
    volume = next(v for v in spec["volumes"] if v["name"] == "redis-ca")
    assert volume["secret"]["secretName"] == "shared-redis-ca"


def test_embedded_redis() -> None:
    objects = render_scenario("embedded-redis")
    host = f"{FULLNAME}-redis.{NAMESPACE}.svc"
    assert env_values(container(api_pod(objects), "worker"))["REDIS_HOST"] == host
    service = find(objects, "Service", f"{FULLNAME}-redis")
    deployment = find(objects, "Deployment", f"{FULLNAME}-redis")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
    redis = container(pod_spec(deployment), "redis")
    assert "$(REDIS_PASSWORD)" in redis["args"]
    assert env_map(redis)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{FULLNAME}-redis"
    assert "Secret" in {o["kind"] for o in objects}


def test_staging_values() -> None:
    objects = render_scenario(STAGING)
    kinds = {o["kind"] for o in objects}
    assert "Secret" not in kinds, "staging reads its password from an existing Secret"
    assert not [o for o in objects if o["metadata"]["name"].endswith("-redis")], "no embedded Redis"
    spec = api_pod_any(objects)
    for name, service in (("api", "wp-k8s-service"), ("worker", "wp-k8s-service-worker")):
        env = env_map(container(spec, name))
        assert env["REDIS_HOST"]["value"] == "redis-master.wordpress-staging.svc.cluster.local"
        assert (env["REDIS_PORT"]["value"], env["REDIS_DB"]["value"]) == ("6379", "0")
        assert env["REDIS_PASSWORD_FILE"]["value"].endswith("/password")
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://tempo.observability.svc.cluster.local:4318"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "http/protobuf"
        assert env["OTEL_SERVICE_NAME"]["value"] == service
        assert "deployment.environment=staging" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"].split(",")
    volume = next(v for v in spec["volumes"] if v["name"] == "redis-password")["secret"]
    assert (volume["secretName"], volume["items"][0]["key"]) == ("wp-k8s-service-redis", "redis-password")


def api_pod_any(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [
        d for d in find_all(objects, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    ]
    return pod_spec(deployment)


# ----------------------------------------------------------------------------- security


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    if workload["kind"] == "Pod":
        return workload["metadata"]["labels"]
    return workload["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
def test_every_pod_meets_pod_security_restricted(scenario: str) -> None:
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


def test_worker_runs_as_the_image_user() -> None:
    objects = render_scenario("worker-deployment-keda")
    spec = worker_pod(objects)
    sc = container(spec, "worker")["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"]) == (10001, 10001)
    assert spec["securityContext"]["fsGroup"] == 10001


def test_service_account_token_is_not_mounted() -> None:
    objects = render_scenario("defaults")
    account = find(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    for _, spec in pod_specs(objects):
        assert spec["serviceAccountName"] == account["metadata"]["name"]
        assert spec["enableServiceLinks"] is False


# ----------------------------------------------------------------------------- OpenTelemetry


@pytest.mark.parametrize("scenario", ["defaults", "existing-secret", "worker-deployment-keda", STAGING])
def test_otel_environment(scenario: str) -> None:
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
                values["OTEL_SERVICE_NAME"] == {"api": "wp-k8s-service", "worker": "wp-k8s-service-worker"}[ctr["name"]]
            )
            assert values["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
            assert values["OTEL_SDK_DISABLED"] == "false"
    assert len(instance_ids) == 2, "service.instance.id must differ between the API and the worker"


def test_otel_sampler_and_extra_attributes() -> None:
    worker = container(api_pod(render_scenario("existing-secret")), "worker")
    env = env_values(worker)
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    attrs = env["OTEL_RESOURCE_ATTRIBUTES"].split(",")
    assert {"deployment.environment=production", "team=platform", "cloud.region=eu-west-1"} <= set(attrs)
    defaults = env_values(container(api_pod(render_scenario("defaults")), "worker"))
    assert "OTEL_TRACES_SAMPLER_ARG" not in defaults
    assert f"deployment.environment={NAMESPACE}" in defaults["OTEL_RESOURCE_ATTRIBUTES"].split(",")
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in defaults


def test_image_tags_and_digests() -> None:
    digest = "sha256:" + "a" * 64
    objects = render_chart(
        with_values(
            {
                "api": {
                    "image": {
                        "repository": "registry.example/api",
                        "tag": "2.3.4",
                        "digest": "",
                        "pullPolicy": "Always",
                    }
                },
                "worker": {
                    "image": {
                        "repository": "ghcr.io/wp-k8s-service/worker",
                        "tag": "",
                        "digest": digest,
                        "pullPolicy": "IfNotPresent",
                    }
                },
            }
        )
    )
    spec = api_pod(objects)
    assert container(spec, "api")["image"] == "registry.example/api:2.3.4"
    assert container(spec, "worker")["image"] == f"ghcr.io/wp-k8s-service/worker:0.1.0@{digest}"
    assert "service.version=2.3.4" in env_values(container(spec, "api"))["OTEL_RESOURCE_ATTRIBUTES"]


# ----------------------------------------------------------------------------- labels, services, monitoring


@pytest.mark.parametrize("scenario", ALL_SCENARIOS)
def test_labels_and_selectors(scenario: str) -> None:
    objects = render_scenario(scenario)
    workloads = [o for o in objects if o["kind"] in ("Deployment", "Pod")]
    for obj in objects:
        labels = obj["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/part-of",
            "helm.sh/chart",
        ):
            assert labels.get(key), f"{obj['kind']}/{obj['metadata']['name']} lacks {key}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
    for workload in workloads:
        component = pod_labels(workload)["app.kubernetes.io/component"]
        assert component in ("api", "worker", "redis", "test")
        if workload["kind"] == "Deployment":
            assert workload["spec"]["selector"]["matchLabels"].items() <= pod_labels(workload).items()
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
    for pdb in find_all(objects, "PodDisruptionBudget"):
        selected = [w for w in workloads if pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(w).items()]
        assert [w["kind"] for w in selected] == ["Deployment"]


@pytest.mark.parametrize(("scenario", "component"), [("servicemonitor", "api"), ("worker-deployment-keda", "worker")])
def test_service_monitor_scrapes_the_worker_metrics(scenario: str, component: str) -> None:
    objects = render_scenario(scenario)
    monitor = find(objects, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    services = [
        s
        for s in find_all(objects, "Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert len(services) == 1
    (service,) = services
    assert service["metadata"]["name"] == f"{FULLNAME}-metrics"
    assert service["spec"]["clusterIP"] == "None"
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    # The metrics Service selects the pods that run the worker: API pods in sidecar mode.
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == component
    api_service = find(objects, "Service", FULLNAME)
    assert [p["name"] for p in api_service["spec"]["ports"]] == ["http"], "metrics stay off the API Service"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    if scenario == "servicemonitor":
        assert monitor["metadata"]["namespace"] == "monitoring"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert (endpoint["interval"], endpoint["scrapeTimeout"], endpoint["honorLabels"]) == ("15s", "5s", True)
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
        assert endpoint["relabelings"][0]["targetLabel"] == "node"
        assert endpoint["metricRelabelings"][0]["action"] == "drop"


def test_service_monitor_is_off_by_default() -> None:
    assert not find_all(render_scenario("defaults"), "ServiceMonitor")


def test_pod_disruption_budgets() -> None:
    pdbs = find_all(render_scenario("defaults"), "PodDisruptionBudget")
    assert [(p["metadata"]["name"], p["spec"]["maxUnavailable"]) for p in pdbs] == [(FULLNAME, 1)]
    names = sorted(
        p["metadata"]["name"] for p in find_all(render_scenario("worker-deployment-keda"), "PodDisruptionBudget")
    )
    assert names == [FULLNAME, f"{FULLNAME}-worker"]


# ----------------------------------------------------------------------------- network policies


def test_network_policies() -> None:
    objects = render_scenario("networkpolicy")
    policies = {p["metadata"]["name"]: p["spec"] for p in find_all(objects, "NetworkPolicy")}
    assert sorted(policies) == [FULLNAME, f"{FULLNAME}-test", f"{FULLNAME}-worker"]
    api, worker, test = policies[FULLNAME], policies[f"{FULLNAME}-worker"], policies[f"{FULLNAME}-test"]
    assert api["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    assert [r["ports"] for r in api["ingress"]] == [[{"port": "http", "protocol": "TCP"}]]
    assert api["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    assert worker["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert worker["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    egress_ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in worker["egress"]]
    assert egress_ports == [[(53, "TCP"), (53, "UDP")], [(6379, "TCP")], [(4318, "TCP")], [(5432, "TCP")]]
    assert worker["egress"][1]["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "redis"}
    assert worker["egress"][2]["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "observability"
    }
    assert api["egress"] == worker["egress"]
    assert test["egress"] == worker["egress"][:2]
    assert "ingress" not in test
    assert all(p["policyTypes"] == ["Ingress", "Egress"] for p in policies.values())


def test_network_policies_in_sidecar_mode_with_embedded_redis() -> None:
    objects = render_chart(
        {
            "embeddedRedis": {"enabled": True},
            "networkPolicy": {"enabled": True},
            "otel": {"endpoint": "https://collector.example"},
        }
    )
    policies = {p["metadata"]["name"]: p["spec"] for p in find_all(objects, "NetworkPolicy")}
    api = policies[FULLNAME]
    assert [r["ports"][0]["port"] for r in api["ingress"]] == ["http", "metrics"]
    redis_rule = api["egress"][1]
    assert redis_rule["to"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/component": "redis",
                    "app.kubernetes.io/instance": RELEASE,
                    "app.kubernetes.io/name": "wp-k8s-service",
                }
            }
        }
    ]
    assert api["egress"][2] == {"ports": [{"port": 443, "protocol": "TCP"}]}
    redis = policies[f"{FULLNAME}-redis"]
    assert redis["egress"] == []
    assert redis["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/name": "wp-k8s-service",
    }


# ----------------------------------------------------------------------------- helm test and notes


@pytest.mark.parametrize("scenario", ["defaults", "existing-secret", "embedded-redis", "worker-deployment-keda"])
def test_helm_test_pod_probes_the_queue(scenario: str) -> None:
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


def test_tests_can_be_turned_off() -> None:
    objects = render_chart(with_values({"tests": {"enabled": False}}))
    assert not find_all(objects, "Pod")


def test_notes_say_what_was_installed_without_secrets() -> None:
    """helm install --dry-run=client renders NOTES.txt (Helm 4; Helm 3 wants a cluster for it)."""
    values = with_values({"redis": {**default_values()["redis"], "password": "n0t-in-the-notes"}})
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        json.dump(values, handle)
        handle.flush()
        output = run_helm(["install", RELEASE, "chart", "--dry-run=client", "-n", NAMESPACE, "-f", handle.name])
    notes = output.split("NOTES:", 1)[1]
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


# ----------------------------------------------------------------------------- the WordPress clone


def test_clone_settings_and_credentials_reach_the_worker() -> None:
    values = with_values(
        {
            "worker": {
                "clone": {
                    "allowedHosts": ["blog.example.com", "*.example.org"],
                    "allowedNetworks": ["10.0.0.0/8"],
                    "credentialsSecret": "wordpress-clone-credentials",
                },
                "resultTtl": 3600,
            },
            "networkPolicy": {"enabled": True},
        }
    )
    objects = render_chart(values)
    spec = api_pod(objects)
    worker = container(spec, "worker")
    env = env_values(worker)
    assert env["CLONE_ALLOWED_HOSTS"] == "blog.example.com,*.example.org"
    assert env["CLONE_ALLOWED_NETWORKS"] == "10.0.0.0/8"
    assert env["CLONE_CREDENTIALS_DIR"] == "/var/run/secrets/wp-k8s-service/wordpress"
    assert env["WORKER_RESULT_TTL"] == "3600"
    mount = next(m for m in worker["volumeMounts"] if m["name"] == "clone-credentials")
    assert mount == {
        "name": "clone-credentials",
        "mountPath": "/var/run/secrets/wp-k8s-service/wordpress",
        "readOnly": True,
    }
    volume = next(v for v in spec["volumes"] if v["name"] == "clone-credentials")
    assert volume["secret"] == {"secretName": "wordpress-clone-credentials", "defaultMode": 0o440}
    assert "clone-credentials" not in [m["name"] for m in container(spec, "api").get("volumeMounts", [])]
    # With network policies on, the worker may reach WordPress sites on 80 and 443.
    policy = find(objects, "NetworkPolicy", FULLNAME)["spec"]
    web_ports = [rule for rule in policy["egress"] if {"port": 443, "protocol": "TCP"} in rule.get("ports", [])]
    assert web_ports == [{"ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]}]


def test_without_allowed_hosts_no_clone_credentials_or_web_egress() -> None:
    values = with_values({"networkPolicy": {"enabled": True}})
    objects = render_chart(values)
    worker = container(api_pod(objects), "worker")
    assert "CLONE_CREDENTIALS_DIR" not in env_values(worker)
    assert env_values(worker)["CLONE_ALLOWED_HOSTS"] == ""
    policy = find(objects, "NetworkPolicy", FULLNAME)["spec"]
    assert not [rule for rule in policy["egress"] if {"port": 443, "protocol": "TCP"} in rule.get("ports", [])]
