"""Redis from a URL Secret (`redis.existingUrlSecret`): every container that talks to Redis gets `REDIS_URL`
from the Secret and nothing else about Redis, whatever the worker mode; the chart renders references only,
never the URL or a password; the host settings and KEDA are refused next to it."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from wp_devsupport.chart import (
    FULLNAME,
    HELMS,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    HelmError,
    all_containers,
    api_pod,
    container,
    default_values,
    env_map,
    find,
    find_all,
    kube_schemas,
    pod_spec,
    pod_specs,
    render_chart,
    render_chart_text,
    run_helm,
    with_values,
    worker_pod,
)

URL_SECRET, URL_KEY = "team-redis-url", "url"
URL_REF = {"secretKeyRef": {"name": URL_SECRET, "key": URL_KEY}}
#: What the worker refuses next to REDIS_URL (worker_app/runtime/settings.py), and the password forms.
HOST_MODE_VARS = {"REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_USERNAME", "REDIS_TLS", "REDIS_PASSWORD"}
HOST_MODE_VARS |= {"REDIS_PASSWORD_FILE"}

#: worker.mode / nativeSidecar combinations -> where the worker container lives.
WORKER_MODES: dict[str, dict[str, Any]] = {
    "sidecar": {},
    "native-sidecar": {
        "worker": {"nativeSidecar": True, "terminationGracePeriodSeconds": 120},
        "api": {"terminationGracePeriodSeconds": 20},
    },
    "deployment": {"worker": {"mode": "deployment"}},
}


def url_values(extra: dict[str, Any] | None = None, **redis: Any) -> dict[str, Any]:
    """The CI defaults with the host replaced by the URL Secret (and `extra` blocks merged one level deep)."""
    values = with_values(extra or {})
    values["redis"] = {"existingUrlSecret": URL_SECRET, "existingUrlSecretKey": URL_KEY, **redis}
    return values


def redis_clients(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, container) of every container of the chart that talks to Redis: API, worker, test probe."""
    return [
        (f"{where}/{ctr['name']}", ctr)
        for where, spec in pod_specs(objects)
        for ctr in all_containers(spec)
        if ctr["name"] in ("api", "worker", "probe")
    ]


class TestApiAndWorker:
    @pytest.mark.parametrize("mode", sorted(WORKER_MODES))
    def test_both_get_redis_url_from_the_secret_and_nothing_else(self, mode: str) -> None:
        objects = render_chart(url_values(WORKER_MODES[mode]))
        clients = redis_clients(objects)
        assert sorted(name.rsplit("/", 1)[1] for name, _ in clients) == ["api", "probe", "worker"], mode
        for where, ctr in clients:
            env = env_map(ctr)
            assert env["REDIS_URL"] == {"name": "REDIS_URL", "valueFrom": URL_REF}, where
            assert not HOST_MODE_VARS & set(env), f"{where}: {sorted(HOST_MODE_VARS & set(env))} next to REDIS_URL"
            assert not [m for m in ctr.get("volumeMounts", []) if m["name"] == "redis-password"], where

    @pytest.mark.parametrize("mode", sorted(WORKER_MODES))
    def test_worker_container_is_where_the_mode_puts_it(self, mode: str) -> None:
        objects = render_chart(url_values(WORKER_MODES[mode]))
        spec = worker_pod(objects) if mode == "deployment" else api_pod(objects)
        kind = "initContainers" if mode == "native-sidecar" else "containers"
        (worker,) = [c for c in spec.get(kind, []) if c["name"] == "worker"]
        assert env_map(worker)["REDIS_URL"]["valueFrom"] == URL_REF
        if mode == "deployment":
            assert env_map(container(api_pod(objects), "api"))["REDIS_URL"]["valueFrom"] == URL_REF

    @pytest.mark.parametrize("mode", sorted(WORKER_MODES))
    def test_no_password_volume_and_no_managed_secret(self, mode: str) -> None:
        objects = render_chart(url_values(WORKER_MODES[mode]))
        assert not find_all(objects, "Secret"), "the URL Secret is the user's: the chart manages none"
        for where, spec in pod_specs(objects):
            assert not [v for v in spec.get("volumes", []) if v["name"] == "redis-password"], where

    def test_default_key_is_redis_url(self) -> None:
        values = url_values()
        del values["redis"]["existingUrlSecretKey"]
        api = container(api_pod(render_chart(values)), "api")
        assert env_map(api)["REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": URL_SECRET, "key": "redis-url"}}

    def test_a_rediss_url_keeps_its_ca_bundle(self) -> None:
        objects = render_chart(url_values(tls={"existingCaSecret": "redis-ca", "caSecretKey": "ca.pem"}))
        for where, ctr in redis_clients(objects):
            env = env_map(ctr)
            assert env["REDIS_TLS_CA_FILE"]["value"] == "/var/run/secrets/wp-k8s-service/redis-ca/ca.pem", where
            assert "REDIS_TLS" not in env, where
        volume = next(v for v in api_pod(objects)["volumes"] if v["name"] == "redis-ca")
        assert volume["secret"]["secretName"] == "redis-ca"


class TestObjects:
    @pytest.mark.parametrize("helm", HELMS)
    @pytest.mark.parametrize("mode", sorted(WORKER_MODES))
    def test_valid_against_the_kubernetes_schemas(self, mode: str, helm: str) -> None:
        values = url_values({**WORKER_MODES[mode], "networkPolicy": {"enabled": True}})
        objects = render_chart(values, helm=helm)
        problems = [str(p) for v in KUBE_VERSIONS for obj in objects for p in kube_schemas(v).problems(obj)]
        assert not problems, "\n".join(problems)

    def test_notes_name_the_secret_and_no_password_command(self) -> None:
        # helm install --dry-run=client renders NOTES.txt (Helm 4; Helm 3 wants a cluster for it).
        args = ["install", RELEASE, "chart", "--dry-run=client", "-n", NAMESPACE]
        args += ["--set", f"redis.existingUrlSecret={URL_SECRET}", "--set", f"redis.existingUrlSecretKey={URL_KEY}"]
        notes = run_helm(args).split("NOTES:", 1)[1]
        assert f'Secret/{URL_SECRET} key "{URL_KEY}" (REDIS_URL' in notes, notes
        assert "get secret" not in notes, "no chart-managed password to read back"
        assert "Redis password:" not in notes


class TestDramatiqServiceName:
    @pytest.mark.parametrize("mode", sorted(WORKER_MODES))
    def test_each_container_names_its_service_as_the_guide_does(self, mode: str) -> None:
        objects = render_chart(url_values({**WORKER_MODES[mode], "otel": {"api": {"serviceName": "team-api"}}}))
        names = {}
        for where, ctr in redis_clients(objects):
            env = env_map(ctr)
            if ctr["name"] == "probe":
                continue
            assert env["DRAMATIQ_SERVICE_NAME"]["value"] == env["OTEL_SERVICE_NAME"]["value"], where
            names[ctr["name"]] = env["DRAMATIQ_SERVICE_NAME"]["value"]
        assert names == {"api": "team-api", "worker": "wp-k8s-service-worker"}


class TestNothingSecretRendered:
    SECRET_URL = "redis://:Pa55-w0rd%40x@redis-master.example:6379/0"

    @pytest.mark.parametrize("helm", HELMS)
    def test_only_references_are_rendered(self, helm: str) -> None:
        """The URL lives in the user's Secret; the manifest holds its name and key and nothing of its value,
        while the same password given the other way does land in the chart's Secret (so the check can fail)."""
        text = render_chart_text(url_values(WORKER_MODES["deployment"]), helm=helm)
        for fragment in (self.SECRET_URL, "Pa55-w0rd", "redis-master.example", "redis://"):
            assert fragment not in text
        assert f"name: {URL_SECRET}" in text
        assert f'key: "{URL_KEY}"' in text
        managed = render_chart(with_values({"redis": {**default_values()["redis"], "password": "Pa55-w0rd"}}))
        assert base64.b64decode(find(managed, "Secret")["data"]["redis-password"]) == b"Pa55-w0rd"

    def test_no_literal_password_like_variable(self) -> None:
        for where, spec in pod_specs(render_chart(url_values(WORKER_MODES["deployment"]))):
            for ctr in all_containers(spec):
                for item in ctr.get("env", []):
                    if re.search(r"URL|PASSWORD|SECRET|TOKEN|AUTH", item["name"]):
                        assert "value" not in item, f"{where}/{ctr['name']}: {item['name']} is a literal"


class TestChecksum:
    @staticmethod
    def checksums(**redis: Any) -> set[str]:
        return {
            d["spec"]["template"]["metadata"]["annotations"]["checksum/redis-secret"]
            for d in find_all(render_chart(url_values(WORKER_MODES["deployment"], **redis)), "Deployment")
        }

    def test_follows_the_secret_reference(self) -> None:
        (base,) = self.checksums()
        (same,) = self.checksums()
        (other_name,) = self.checksums(existingUrlSecret="other-url")
        (other_key,) = self.checksums(existingUrlSecretKey="other-key")
        assert base == same
        assert len({base, other_name, other_key}) == 3
        assert re.fullmatch(r"[0-9a-f]{64}", base)


class TestNetworkPolicy:
    def test_redis_egress_on_redis_port_towards_the_given_peers(self) -> None:
        """The chart cannot read the URL: the egress rule uses redis.port and networkPolicy.redisEgressTo."""
        peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "wordpress-staging"}}}]
        objects = render_chart(
            url_values(
                {**WORKER_MODES["deployment"], "networkPolicy": {"enabled": True, "redisEgressTo": peers}}, port=6380
            )
        )
        policies = find_all(objects, "NetworkPolicy")
        assert {p["metadata"]["name"] for p in policies} == {FULLNAME, f"{FULLNAME}-worker", f"{FULLNAME}-test"}
        for policy in policies:
            rules = [r for r in policy["spec"]["egress"] if r["ports"] == [{"port": 6380, "protocol": "TCP"}]]
            assert rules == [{"ports": [{"port": 6380, "protocol": "TCP"}], "to": peers}], policy["metadata"]["name"]


#: A value of the host settings -> its name in the refusal.
CONFLICTS: dict[str, tuple[dict[str, Any], str]] = {
    "host": ({"host": "redis.example"}, "redis.host"),
    "existing-secret": ({"existingSecret": "redis"}, "redis.existingSecret"),
    "password": ({"password": "x"}, "redis.password"),
    "username": ({"username": "worker"}, "redis.username"),
    "db": ({"db": 2}, "redis.db"),
    "tls": ({"tls": {"enabled": True}}, "redis.tls.enabled"),
}


class TestRefused:
    @pytest.mark.parametrize("helm", HELMS)
    @pytest.mark.parametrize("case", sorted(CONFLICTS))
    def test_host_settings_next_to_the_url(self, case: str, helm: str) -> None:
        redis, name = CONFLICTS[case]
        with pytest.raises(HelmError) as failure:
            render_chart(url_values(**redis), helm=helm)
        expected = rf"redis\.existingUrlSecret and {re.escape(name)} are mutually exclusive"
        assert re.search(expected, failure.value.stderr), failure.value.stderr

    def test_every_conflicting_value_is_named_at_once(self) -> None:
        with pytest.raises(HelmError) as failure:
            render_chart(url_values(host="redis.example", existingSecret="redis"))
        assert "redis.existingUrlSecret and redis.existingSecret, redis.host are mutually exclusive" in str(
            failure.value
        )

    def test_embedded_redis(self) -> None:
        with pytest.raises(HelmError, match=r"redis\.existingUrlSecret and embeddedRedis\.enabled are mutually"):
            render_chart(url_values({"embeddedRedis": {"enabled": True}}))

    @pytest.mark.parametrize("helm", HELMS)
    def test_keda_cannot_read_a_url(self, helm: str) -> None:
        values = url_values({"worker": {"mode": "deployment", "keda": {"enabled": True}}})
        with pytest.raises(HelmError) as failure:
            render_chart(values, helm=helm)
        assert re.search(
            r"redis\.existingUrlSecret and worker\.keda\.enabled are mutually exclusive: KEDA's redis scaler takes a "
            r"host:port address",
            failure.value.stderr,
        ), failure.value.stderr

    def test_schema_rejects_a_misspelt_key(self) -> None:
        values = url_values()
        values["redis"]["existingUrlSecretName"] = "x"
        with pytest.raises(HelmError, match=r"additional properties 'existingUrlSecretName' not allowed"):
            render_chart(values)


class TestTheWorkerAcceptsIt:
    def test_rendered_environment_passes_the_workers_validation(self) -> None:
        """The worker container's environment, with the Secret's URL and the downward API filled in as the
        kubelet would, is accepted by the worker's own settings and reaches the URL's Redis."""
        from worker_app.runtime.settings import Settings

        objects = render_chart(url_values(WORKER_MODES["deployment"]))
        worker = container(pod_spec(find(objects, "Deployment", f"{FULLNAME}-worker")), "worker")
        env: dict[str, str] = {}
        for item in worker["env"]:
            if "value" in item:
                env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), ""), item["value"])
            elif item["valueFrom"] == URL_REF:
                env[item["name"]] = "redis://:p%40ss@redis-master.example:6380/3"
            else:
                env[item["name"]] = "from-the-downward-api"
        settings = Settings.from_env(env)
        redis = settings.redis
        assert (redis.host, redis.port, redis.db, redis.password) == ("redis-master.example", 6380, 3, "p@ss")
        assert json.dumps(env).count("REDIS_") == 1
