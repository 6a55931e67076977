"""The staging environment as the README installs it: `helm dependency build .` at the repository root, then
`helm template wp-k8s-service . -n wp-k8s-service-staging -f values-staging.yaml`, with Helm 3 and 4. The
render holds every item of the setup guide's configuration (REDIS_URL from a Secret, DRAMATIQ_SERVICE_NAME,
the OTLP endpoint, service names and environment, a ServiceMonitor on the worker's dramatiq_* metrics), what a
clone job needs (allowed hosts, credentials Secret), and the documents agree with the file."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from wp_devsupport.chart import (
    HELMS,
    NEWEST_KUBE,
    REPO,
    all_containers,
    env_map,
    find,
    find_all,
    load_documents,
    pod_spec,
    pod_specs,
    run_helm,
)

RELEASE, NAMESPACE = "wp-k8s-service", "wp-k8s-service-staging"
FULLNAME = RELEASE  # the release name holds the chart name
VALUES = REPO / "values-staging.yaml"
URL_REF = {"secretKeyRef": {"name": "wp-k8s-service-redis", "key": "redis-url"}}
SERVICE_NAMES = {"api": "wp-k8s-service", "worker": "wp-k8s-service-worker"}
#: The four dramatiq_* families of the guide's dashboards, served on the worker's /metrics (README "Metrics").
GUIDE_METRICS = (
    "dramatiq_messages_processed_total",
    "dramatiq_message_processing_time",
    "dramatiq_errors_total",
    "dramatiq_queue_depth",
)


@pytest.fixture(scope="module", params=HELMS)
def staging(request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    """The staging objects, rendered the README's way by one helm binary in a copy of the root chart."""
    helm: str = request.param
    work = Path(tempfile.mkdtemp(prefix="wp-staging-"))
    try:
        for name in ("Chart.yaml", "Chart.lock", ".helmignore", "values-staging.yaml"):
            shutil.copy2(REPO / name, work / name)
        shutil.copytree(REPO / "templates", work / "templates")
        shutil.copytree(REPO / "chart", work / "chart")
        run_helm(["dependency", "build", "."], helm, cwd=work)
        args = ["template", RELEASE, ".", "-n", NAMESPACE, "-f", "values-staging.yaml", "--kube-version", NEWEST_KUBE]
        # A staging cluster serves the Prometheus Operator's API (the chart checks it).
        args += ["--api-versions", "monitoring.coreos.com/v1"]
        yield load_documents(run_helm(args, helm, cwd=work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def clients(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The containers that talk to Redis by name: api, worker, probe (the helm test pod)."""
    found = {c["name"]: c for _, spec in pod_specs(objects) for c in all_containers(spec)}
    return {name: found[name] for name in ("api", "worker", "probe")}


def worker_environment(worker: dict[str, Any], root: Path) -> dict[str, str]:
    """The worker's environment as the kubelet would give it: stand-ins for the Secret and downward API values,
    and the container's volume mounts as directories under `root`."""
    mounts = [m["mountPath"] for m in worker["volumeMounts"]]
    for path in mounts:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    for item in worker["env"]:
        if "value" in item:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), ""), item["value"])
            if any(value == path or value.startswith(path + "/") for path in mounts):
                value = str(root / value.lstrip("/"))
            env[item["name"]] = value
        elif item["valueFrom"] == URL_REF:
            env[item["name"]] = "redis://:s3cret@redis-master.wordpress-staging.svc.cluster.local:6379/0"
        else:
            env[item["name"]] = "from-the-downward-api"
    return env


class TestGuideConfiguration:
    def test_everything_lands_in_the_staging_namespace(self, staging: list[dict[str, Any]]) -> None:
        assert {o["metadata"].get("namespace") for o in staging} == {NAMESPACE}

    def test_redis_url_from_the_secret_in_api_worker_and_test_pod(self, staging: list[dict[str, Any]]) -> None:
        for name, ctr in clients(staging).items():
            env = env_map(ctr)
            assert env["REDIS_URL"] == {"name": "REDIS_URL", "valueFrom": URL_REF}, name
            assert not [v for v in env if v.startswith("REDIS_") and v != "REDIS_URL"], name
        assert not find_all(staging, "Secret"), "the URL Secret exists before the install; the chart makes none"
        assert not [o for o in staging if o["metadata"]["name"].endswith("-redis")], "no embedded Redis"

    @pytest.mark.parametrize("name", sorted(SERVICE_NAMES))
    def test_otel_and_service_names(self, staging: list[dict[str, Any]], name: str) -> None:
        env = {k: v.get("value") for k, v in env_map(clients(staging)[name]).items()}
        assert env["DRAMATIQ_SERVICE_NAME"] == SERVICE_NAMES[name]
        assert env["OTEL_SERVICE_NAME"] == SERVICE_NAMES[name]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://tempo.observability.svc.cluster.local:4318"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert env["OTEL_SDK_DISABLED"] == "false"
        assert "deployment.environment=staging" in (env["OTEL_RESOURCE_ATTRIBUTES"] or "").split(",")

    def test_service_monitor_scrapes_the_workers_dramatiq_metrics(self, staging: list[dict[str, Any]]) -> None:
        monitor = find(staging, "ServiceMonitor")
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint.get("path", "/metrics")) == ("metrics", "/metrics")
        dropped = [r for r in endpoint.get("metricRelabelConfigs", []) if r.get("action") in ("drop", "keep")]
        assert not dropped, "the dramatiq_* families reach Prometheus unfiltered"
        services = [
            s
            for s in find_all(staging, "Service")
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        (service,) = services
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == "metrics"]
        pods = [
            pod_spec(d)
            for d in find_all(staging, "Deployment")
            if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        (worker,) = [c for spec in pods for c in all_containers(spec) if c["name"] == "worker"]
        (served,) = [p for p in worker["ports"] if p["name"] == port["targetPort"]]
        assert env_map(worker)["METRICS_PORT"]["value"] == str(served["containerPort"])
        readme = (REPO / "README.md").read_text()
        for metric in GUIDE_METRICS:
            assert f"| `{metric}` |" in readme, f"{metric} is not in the worker's metrics table"

    def test_clone_jobs_can_reach_the_staging_wordpress_sites(self, staging: list[dict[str, Any]]) -> None:
        worker = clients(staging)["worker"]
        env = env_map(worker)
        assert env["CLONE_ALLOWED_HOSTS"]["value"] == "*.wordpress-staging.svc.cluster.local"
        assert env["CLONE_ALLOWED_NETWORKS"]["value"], "in-cluster sites have private addresses"
        credentials_dir = env["CLONE_CREDENTIALS_DIR"]["value"]
        (mount,) = [m for m in worker["volumeMounts"] if m["mountPath"] == credentials_dir]
        api_spec = pod_spec(find(staging, "Deployment", FULLNAME))
        (volume,) = [v for v in api_spec["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == "wordpress-clone-credentials"

    def test_the_worker_accepts_its_environment(self, staging: list[dict[str, Any]], tmp_path: Path) -> None:
        """The worker's own validation takes the rendered environment: REDIS_URL alone, the clone hosts and
        networks, the service name."""
        from worker_app.runtime.settings import Settings

        settings = Settings.from_env(worker_environment(clients(staging)["worker"], tmp_path))
        assert (settings.redis.host, settings.redis.port, settings.redis.db) == (
            "redis-master.wordpress-staging.svc.cluster.local",
            6379,
            0,
        )
        assert settings.service_name == "wp-k8s-service-worker"
        assert settings.clone.allowed_hosts == ("*.wordpress-staging.svc.cluster.local",)
        assert settings.clone.allowed_networks


class TestDocumentsAgree:
    """README.md, chart/README.md and the file's own header install staging the same way."""

    @staticmethod
    def staging_commands() -> dict[str, str]:
        readme = (REPO / "README.md").read_text()
        chart_readme = (REPO / "chart" / "README.md").read_text()
        root_block = readme[readme.index("Staging (`values-staging.yaml`") :]
        chart_block = chart_readme[chart_readme.index("### Staging") :]
        header = "".join(line for line in VALUES.read_text().splitlines(keepends=True) if line.startswith("#"))
        return {
            "README.md": root_block[: root_block.index("```\n", root_block.index("```sh")) + 4],
            "chart/README.md": chart_block[: chart_block.index("```\n", chart_block.index("```sh")) + 4],
            "values-staging.yaml": header,
        }

    @pytest.mark.parametrize("where", ["README.md", "chart/README.md", "values-staging.yaml"])
    def test_one_namespace_and_release(self, where: str) -> None:
        text = self.staging_commands()[where]
        namespaces = set(re.findall(r"(?:-n|--namespace)\s+([a-z0-9-]+)", text))
        assert namespaces - {"wordpress-staging"} == {NAMESPACE}, f"{where}: {namespaces}"
        assert re.findall(r"helm upgrade --install (\S+) \. ", text) == [RELEASE], where

    @pytest.mark.parametrize("where", ["README.md", "chart/README.md"])
    def test_secrets_created_are_the_ones_the_file_names(self, where: str) -> None:
        text = self.staging_commands()[where]
        values = yaml.safe_load(VALUES.read_text())["wp-k8s-service"]
        created = dict(re.findall(r"create secret generic (\S+) --from-file=([a-z-]+)=/dev/stdin", text))
        assert created == {values["redis"]["existingUrlSecret"]: values["redis"]["existingUrlSecretKey"]}, where
        assert f"create secret generic {values['worker']['clone']['credentialsSecret']} " in text, where
        assert "--from-literal" not in text, "a password on a command line"

    def test_the_header_lists_every_operator_value(self) -> None:
        values = yaml.safe_load(VALUES.read_text())["wp-k8s-service"]
        header = self.staging_commands()["values-staging.yaml"]
        listed = re.findall(r"^#   ([a-z][a-zA-Z.]+)  ", header, flags=re.M)
        operator_known = {"redis.existingUrlSecret", "worker.clone.credentialsSecret", "worker.clone.allowedHosts"}
        assert operator_known <= set(listed), f"the header lists {listed}"
        for path in listed:
            node = values
            for key in path.split("."):
                assert key in node, f"the header names {path}, which the file does not set"
                node = node[key]

    @pytest.mark.parametrize("where", ["README.md", "chart/README.md"])
    def test_the_url_command_percent_encodes_the_password(self, where: str) -> None:
        """The README's pipeline stage that turns the Bitnami password into the Secret's URL, run for real:
        the URL carries the password back intact, whatever its characters."""
        text = self.staging_commands()[where]
        (script,) = re.findall(r"python3 -c '([^']+)'", text)
        password = "p@ss:w/rd%#?&= x"
        out = subprocess.run(
            [sys.executable, "-c", script], input=password, capture_output=True, text=True, check=True
        ).stdout
        url = urlsplit(out)
        assert not out.endswith("\n"), "a trailing newline would be part of REDIS_URL"
        assert (url.scheme, url.hostname, url.port, url.path) == (
            "redis",
            "redis-master.wordpress-staging.svc.cluster.local",
            6379,
            "/0",
        )
        assert unquote(url.password or "") == password
        assert password not in out
