"""Redis wiring: the same connection settings for every client, an existing Secret passed through the
environment with TLS, and the embedded development Redis."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from wp_devsupport.chart import (
    FULLNAME,
    NAMESPACE,
    api_pod,
    container,
    env_map,
    env_values,
    find,
    find_all,
    pod_labels,
    pod_spec,
    render_chart,
    render_scenario,
)


def _redis_env(ctr: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in env_map(ctr).items() if k.startswith("REDIS_")}


class TestRedisConnection:
    @pytest.mark.parametrize("scenario", ["defaults", "existing-secret", "embedded-redis"])
    def test_api_gets_the_same_redis_settings_as_the_worker(self, scenario: str) -> None:
        spec = api_pod(render_scenario(scenario))
        api, worker = container(spec, "api"), container(spec, "worker")
        assert _redis_env(api) == _redis_env(worker), scenario
        assert _redis_env(api), scenario


class TestExistingSecret:
    def test_password_through_env_with_tls(self) -> None:
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


class TestEmbeddedRedis:
    def test_clients_connect_to_its_service(self) -> None:
        objects = render_scenario("embedded-redis")
        host = f"{FULLNAME}-redis.{NAMESPACE}.svc"
        assert env_values(container(api_pod(objects), "worker"))["REDIS_HOST"] == host
        service = find(objects, "Service", f"{FULLNAME}-redis")
        deployment = find(objects, "Deployment", f"{FULLNAME}-redis")
        assert service["spec"]["selector"].items() <= pod_labels(deployment).items()

    def test_one_replica_recreated(self) -> None:
        deployment = find(render_scenario("embedded-redis"), "Deployment", f"{FULLNAME}-redis")
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}

    def test_password_from_the_managed_secret(self) -> None:
        objects = render_scenario("embedded-redis")
        redis = container(pod_spec(find(objects, "Deployment", f"{FULLNAME}-redis")), "redis")
        assert env_map(redis)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{FULLNAME}-redis"
        assert "Secret" in {o["kind"] for o in objects}

    def test_password_is_on_no_command_line(self) -> None:
        """`--requirepass $(REDIS_PASSWORD)` would put it into the process's argv (`ps`, /proc/<pid>/cmdline):
        the shell passes it as configuration on redis-server's standard input instead."""
        objects = render_scenario("embedded-redis")
        redis = container(pod_spec(find(objects, "Deployment", f"{FULLNAME}-redis")), "redis")
        argv = redis["command"] + redis["args"]
        assert not [a for a in argv if "$(REDIS_PASSWORD)" in a or a == "--requirepass"], argv
        shell, flag, script, name = redis["command"]
        assert (shell, flag, name) == ("sh", "-c", "redis-server")
        assert script.startswith('exec redis-server - "$@" <<EOF\n'), "exec keeps redis-server as PID 1"
        assert 'requirepass "$REDIS_PASSWORD"\n' in script
        assert redis["args"][:2] == ["--port", "6379"]

    def test_the_command_starts_a_redis_that_wants_the_password(self, tmp_path: Path) -> None:
        """The rendered command, run by a real shell and redis-server: AUTH is required, the password works,
        and redis-server's command line does not hold it."""
        if not (shutil.which("redis-server") and shutil.which("redis-cli")):
            pytest.skip("redis-server is not installed (make services)")
        password = "s3cret with spaces & $dollars"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        objects = render_chart({"embeddedRedis": {"enabled": True}, "redis": {"password": password, "port": port}})
        redis = container(pod_spec(find(objects, "Deployment", f"{FULLNAME}-redis")), "redis")
        # Loopback only, and a temporary directory for /data.
        args = [str(tmp_path) if a == "/data" else a for a in redis["args"]] + ["--bind", "127.0.0.1"]
        env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": password}
        server = subprocess.Popen([*redis["command"], *args], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
        try:
            ping = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"]
            deadline = time.monotonic() + 10
            while (out := subprocess.run(ping, capture_output=True, text=True, check=False).stdout) == "":
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
            assert "NOAUTH" in out
            authed = subprocess.run(
                ping, capture_output=True, text=True, env={**env, "REDISCLI_AUTH": password}, check=True
            )
            assert authed.stdout.strip() == "PONG"
            assert password.encode() not in Path(f"/proc/{server.pid}/cmdline").read_bytes()
        finally:
            server.terminate()
            assert server.wait(timeout=10) == 0, "redis-server (PID of the exec'd shell) stops on SIGTERM"
