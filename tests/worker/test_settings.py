"""Configuration: defaults, every accepted form, and one-line errors that name the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from worker_app.config.envparse import ConfigError
from worker_app.runtime.settings import DEFAULT_SERVICE_NAME, Settings

SECRET = "hunter2-Secret!"


def load(**env: str) -> Settings:
    return Settings.from_env(env)


def test_defaults_are_a_local_worker():
    settings = load()
    assert settings.redis.host == "127.0.0.1"
    assert settings.redis.port == 6379
    assert settings.redis.db == 0
    assert settings.redis.password is None
    assert settings.queues == ("clone-queue", "ping")
    assert (settings.processes, settings.threads) == (1, 8)
    assert settings.shutdown_timeout == 60
    assert settings.telemetry_flush_timeout == 5
    assert settings.trace_arguments is False
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9191)
    assert settings.service_name == DEFAULT_SERVICE_NAME
    assert settings.otel.protocol == "http/protobuf"
    assert settings.log_format == "json"


def test_redis_url_forms():
    plain = load(REDIS_URL="redis://cache:6380/3").redis
    assert (plain.host, plain.port, plain.db, plain.tls, plain.password) == ("cache", 6380, 3, False, None)
    tls = load(REDIS_URL="rediss://worker:p%40ss@cache.example.com/0").redis
    assert (tls.host, tls.port, tls.tls, tls.username, tls.password) == (
        "cache.example.com",
        6379,
        True,
        "worker",
        "p@ss",
    )
    with_password_env = load(REDIS_URL="redis://cache:6379/0", REDIS_PASSWORD=SECRET).redis
    assert with_password_env.password == SECRET


def test_redis_host_form_with_password_file(tmp_path):
    secret_file = tmp_path / "redis-password"
    secret_file.write_text(SECRET + "\n")
    redis = load(
        REDIS_HOST="redis-master.ns.svc",
        REDIS_PORT="6390",
        REDIS_DB="2",
        REDIS_USERNAME="app",
        REDIS_PASSWORD_FILE=str(secret_file),
        REDIS_TLS="true",
    ).redis
    assert (redis.host, redis.port, redis.db, redis.username, redis.tls) == (
        "redis-master.ns.svc",
        6390,
        2,
        "app",
        True,
    )
    assert redis.password == SECRET
    kwargs = redis.client_kwargs()
    assert kwargs["ssl"] is True
    assert kwargs["password"] == SECRET
    assert kwargs["socket_connect_timeout"] == 5


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDIS_PORT": "abc"}, "REDIS_PORT"),
        ({"REDIS_PORT": "70000"}, "REDIS_PORT"),
        ({"REDIS_DB": "-1"}, "REDIS_DB"),
        ({"REDIS_HOST": "redis://x"}, "REDIS_HOST"),
        ({"REDIS_TLS": "maybe"}, "REDIS_TLS"),
        ({"REDIS_URL": "http://cache:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://cache:notaport"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://cache/zero"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://cache/0?ssl_cert_reqs=none"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://cache/0", "REDIS_HOST": "other"}, "REDIS_HOST"),
        ({"REDIS_URL": f"redis://:{SECRET}@cache/0", "REDIS_PASSWORD": "x"}, "REDIS_URL"),
        ({"REDIS_PASSWORD": "a", "REDIS_PASSWORD_FILE": "/nonexistent"}, "REDIS_PASSWORD_FILE"),
        ({"REDIS_PASSWORD_FILE": "/nonexistent/secret"}, "REDIS_PASSWORD_FILE"),
        ({"REDIS_TLS_CA_FILE": "/nonexistent/ca.crt"}, "REDIS_TLS_CA_FILE"),
        ({"WORKER_QUEUES": "clone-queue,nope"}, "WORKER_QUEUES"),
        ({"WORKER_QUEUES": "ping,ping"}, "WORKER_QUEUES"),
        ({"WORKER_PROCESSES": "0"}, "WORKER_PROCESSES"),
        ({"WORKER_THREADS": "eight"}, "WORKER_THREADS"),
        ({"WORKER_SHUTDOWN_TIMEOUT": "nan"}, "WORKER_SHUTDOWN_TIMEOUT"),
        ({"WORKER_TELEMETRY_FLUSH_TIMEOUT": "0"}, "WORKER_TELEMETRY_FLUSH_TIMEOUT"),
        ({"WORKER_BROKER": "rabbitmq"}, "WORKER_BROKER"),
        ({"METRICS_PORT": "-5"}, "METRICS_PORT"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"OTEL_SDK_DISABLED": "perhaps"}, "OTEL_SDK_DISABLED"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "none,otlp"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment"}, "OTEL_RESOURCE_ATTRIBUTES"),
    ],
)
def test_bad_values_name_the_variable_in_one_line(env, variable):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert raised.value.variable == variable
    message = str(raised.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    assert SECRET not in message


def test_password_never_in_repr_or_description(tmp_path):
    settings = load(REDIS_URL=f"redis://app:{SECRET}@cache:6379/0")
    assert SECRET not in repr(settings)
    assert SECRET not in settings.redis.describe()
    assert settings.redis.describe() == "redis://app@cache:6379/0 (password set)"


def test_service_name_precedence():
    assert load(OTEL_SERVICE_NAME="a", DRAMATIQ_SERVICE_NAME="b").service_name == "a"
    assert load(DRAMATIQ_SERVICE_NAME="b").service_name == "b"
    assert load(OTEL_RESOURCE_ATTRIBUTES="deployment.environment=dev,service.name=c").service_name == "c"


def test_grpc_protocol_is_accepted_when_the_extra_is_installed():
    assert load(OTEL_EXPORTER_OTLP_PROTOCOL="grpc").otel.protocol == "grpc"


def test_worker_exits_2_with_one_line_naming_the_variable():
    env = {key: value for key, value in os.environ.items() if not key.startswith(("REDIS_", "WORKER_", "OTEL_"))}
    env.update(REDIS_URL=f"redis://:{SECRET}@cache:6379/0", REDIS_PASSWORD="other", METRICS_PORT="1")
    result = subprocess.run(
        [sys.executable, "-m", "worker_app"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "REDIS_URL" in lines[0]
    assert "configuration error" in lines[0]
    assert SECRET not in result.stderr + result.stdout
