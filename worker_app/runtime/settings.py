"""The worker's configuration: read from the environment once, validated, and safe to print.

`Settings.from_env(env)` builds it; a process reads its environment once, in its composition root
(`runtime.process.process_settings`), and passes the result down. Every problem raises `ConfigError`
whose message is one line naming the variable; `python -m worker_app` turns it into exit status 2.
Secrets (the Redis password, OTLP headers) are kept out of `repr()` and of every message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Literal
from urllib.parse import unquote, urlsplit

from ..config.envparse import (
    ConfigError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_secret_file,
    env_str,
)
from ..config.queues import ALL_QUEUES
from ..wordpress.settings import CloneSettings

DEFAULT_SERVICE_NAME = "wp-k8s-service-worker"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
OTLP_PROTOCOLS = ("http/protobuf", "grpc")
TRACE_EXPORTERS = ("otlp", "console", "none")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_RESOURCE_PAIR = re.compile(r"^[^=,\s][^=,]*=[^,]*$")

__all__ = ["ConfigError", "OtelSettings", "RedisSettings", "Settings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisSettings:
    """Where Redis is and how to reach it (`REDIS_*`); the password never appears in `repr()`.

    :param host: host name or address.
    :param port: TCP port.
    :param db: database index.
    :param username: ACL user, if any.
    :param password: password, if any.
    :param tls: connect with TLS.
    :param tls_ca_file: CA bundle that signed the server's certificate.

    Example::

        client = redis.Redis(**settings.redis.client_kwargs())
        logger.info("Redis at %s", settings.redis.describe())  # redis://host:6379/0 (password set)
    """

    host: str
    port: int
    db: int
    username: str | None
    password: str | None = field(repr=False)
    tls: bool
    tls_ca_file: str | None

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments for `redis.Redis`, with timeouts so a dead server never hangs a caller."""
        kwargs: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self.password,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 30,
        }
        if self.tls:
            kwargs["ssl"] = True
            if self.tls_ca_file:
                kwargs["ssl_ca_certs"] = self.tls_ca_file
        return kwargs

    def describe(self) -> str:
        """Where Redis is, for log lines: never the password."""
        scheme = "rediss" if self.tls else "redis"
        user = f"{self.username}@" if self.username else ""
        secret = " (password set)" if self.password else ""
        return f"{scheme}://{user}{self.host}:{self.port}/{self.db}{secret}"


@dataclass(frozen=True, slots=True, kw_only=True)
class OtelSettings:
    """The `OTEL_*` values this package checks at start (the SDK reads them again itself).

    :param sdk_disabled: `OTEL_SDK_DISABLED`.
    :param traces_exporter: `OTEL_TRACES_EXPORTER`, split.
    :param protocol: the OTLP protocol (`http/protobuf` or `grpc`).
    :param endpoint: the OTLP endpoint, when set.
    :param sdk_span_metrics: `OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED` as the SDK reads it (only
      `true`): the SDK's own span metrics, which only spans it starts itself record.
    """

    sdk_disabled: bool
    traces_exporter: tuple[str, ...]
    protocol: str
    endpoint: str | None
    sdk_span_metrics: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the worker and its producers are configured with, validated (README, "Configuration").

    Built once per process from its environment and passed down: `build_broker(settings)` gives each
    middleware what it needs, the supervisor and the actors take what they use.

    :param redis: `REDIS_*`.
    :param broker: `WORKER_BROKER`: `redis`, or `stub` (Dramatiq's in-memory broker, for tests).
    :param queues: `WORKER_QUEUES`.
    :param processes: `WORKER_PROCESSES`.
    :param threads: `WORKER_THREADS`.
    :param shutdown_timeout: `WORKER_SHUTDOWN_TIMEOUT`, seconds.
    :param telemetry_flush_timeout: `WORKER_TELEMETRY_FLUSH_TIMEOUT`, seconds.
    :param trace_arguments: `WORKER_TRACE_ARGUMENTS`.
    :param result_ttl: `WORKER_RESULT_TTL`, seconds (0: no result backend).
    :param metrics_host: `METRICS_HOST`.
    :param metrics_port: `METRICS_PORT`.
    :param multiproc_dir: `PROMETHEUS_MULTIPROC_DIR`: the metrics directory (the only way the
      package reads that variable).
    :param log_level: `LOG_LEVEL`.
    :param log_format: `LOG_FORMAT`.
    :param service_name: the service name of spans and log lines.
    :param otel: the checked `OTEL_*` values.
    :param clone: the WordPress clone's `CLONE_*`/`WORDPRESS_AUTH_*`.

    Example::

        settings = Settings.from_env({"REDIS_HOST": "redis", "WORKER_PROCESSES": "2"})
        broker = build_broker(settings)
    """

    redis: RedisSettings
    broker: Literal["redis", "stub"]
    queues: tuple[str, ...]
    processes: int
    threads: int
    shutdown_timeout: float
    telemetry_flush_timeout: float
    trace_arguments: bool
    log_arguments: bool
    heartbeat_timeout: float
    result_ttl: float
    metrics_host: str
    metrics_port: int
    multiproc_dir: str | None
    log_level: str
    log_format: Literal["json", "text"]
    service_name: str
    otel: OtelSettings
    clone: CloneSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            redis=_redis_settings(env),
            broker=_broker_kind(env),
            queues=_queues(env),
            processes=env_int(env, "WORKER_PROCESSES", 1, minimum=1, maximum=64),
            threads=env_int(env, "WORKER_THREADS", 8, minimum=1, maximum=256),
            shutdown_timeout=env_float(env, "WORKER_SHUTDOWN_TIMEOUT", 60.0, minimum=1, maximum=86_400),
            telemetry_flush_timeout=env_float(env, "WORKER_TELEMETRY_FLUSH_TIMEOUT", 5.0, minimum=0.1, maximum=120),
            trace_arguments=env_bool(env, "WORKER_TRACE_ARGUMENTS", False),
            log_arguments=env_bool(env, "WORKER_LOG_ARGUMENTS", False),
            heartbeat_timeout=env_float(env, "WORKER_HEARTBEAT_TIMEOUT", 60.0, minimum=10, maximum=3600),
            result_ttl=env_float(env, "WORKER_RESULT_TTL", 0.0, minimum=0, maximum=7 * 86_400),
            metrics_host=env_str(env, "METRICS_HOST", "0.0.0.0") or "0.0.0.0",  # noqa: S104 - scraped from outside the pod
            metrics_port=env_int(env, "METRICS_PORT", 9191, minimum=1, maximum=65535),
            multiproc_dir=env_str(env, "PROMETHEUS_MULTIPROC_DIR"),
            log_level=_log_level(env),
            log_format="json" if env_choice(env, "LOG_FORMAT", "json", ("json", "text")) == "json" else "text",
            service_name=_service_name(env),
            otel=_otel_settings(env),
            clone=CloneSettings.from_env(env),
        )


def _service_name(env: Mapping[str, str]) -> str:
    """OTEL_SERVICE_NAME, else the seed's DRAMATIQ_SERVICE_NAME, else service.name in
    OTEL_RESOURCE_ATTRIBUTES (which the SDK would use), else the package default."""
    explicit = env_str(env, "OTEL_SERVICE_NAME") or env_str(env, "DRAMATIQ_SERVICE_NAME")
    if explicit:
        return explicit
    for pair in (env_str(env, "OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "service.name" and value.strip():
            return unquote(value.strip())
    return DEFAULT_SERVICE_NAME


def _log_level(env: Mapping[str, str]) -> str:
    raw = env_str(env, "LOG_LEVEL", "INFO") or "INFO"
    if raw.upper() not in LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", f"expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return raw.upper()


def _broker_kind(env: Mapping[str, str]) -> Literal["redis", "stub"]:
    kind = env_choice(env, "WORKER_BROKER", "redis", ("redis", "stub"))
    return "stub" if kind == "stub" else "redis"


def _queues(env: Mapping[str, str]) -> tuple[str, ...]:
    queues = env_list(env, "WORKER_QUEUES", ALL_QUEUES)
    unknown = [queue for queue in queues if queue not in ALL_QUEUES]
    if unknown:
        raise ConfigError(
            "WORKER_QUEUES",
            f"unknown queue(s) {', '.join(unknown)}; this worker has {', '.join(ALL_QUEUES)}",
        )
    return queues


def _redis_settings(env: Mapping[str, str]) -> RedisSettings:
    password = env_str(env, "REDIS_PASSWORD")
    password_file = env_str(env, "REDIS_PASSWORD_FILE")
    if password is not None and password_file is not None:
        raise ConfigError("REDIS_PASSWORD_FILE", "set either REDIS_PASSWORD or REDIS_PASSWORD_FILE, not both")
    if password_file is not None:
        password = env_secret_file(env, "REDIS_PASSWORD_FILE")
    tls_ca_file = env_str(env, "REDIS_TLS_CA_FILE")
    if tls_ca_file is not None and not os.path.isfile(tls_ca_file):
        raise ConfigError("REDIS_TLS_CA_FILE", f"file {tls_ca_file} does not exist")

    url = env_str(env, "REDIS_URL")
    if url is None:
        host = env_str(env, "REDIS_HOST", "127.0.0.1") or "127.0.0.1"
        if any(ch.isspace() or ch in "/@" for ch in host):
            raise ConfigError("REDIS_HOST", "expected a host name or address, not a URL")
        tls = env_bool(env, "REDIS_TLS", False)
        return RedisSettings(
            host=host,
            port=env_int(env, "REDIS_PORT", 6379, minimum=1, maximum=65535),
            db=env_int(env, "REDIS_DB", 0, minimum=0, maximum=1_000_000),
            username=env_str(env, "REDIS_USERNAME"),
            password=password,
            tls=tls,
            tls_ca_file=tls_ca_file,
        )

    for conflicting in ("REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_USERNAME", "REDIS_TLS"):
        if env_str(env, conflicting) is not None:
            raise ConfigError(conflicting, "cannot be combined with REDIS_URL; put it in the URL instead")
    return _parse_redis_url(url, password, tls_ca_file)


def _parse_redis_url(url: str, password: str | None, tls_ca_file: str | None) -> RedisSettings:
    # Messages below never quote the URL: it may carry the password.
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError("REDIS_URL", "not a valid URL (check the port)") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError("REDIS_URL", f"scheme must be redis:// or rediss://, got {parts.scheme or 'none'}://")
    if not parts.hostname:
        raise ConfigError("REDIS_URL", "has no host")
    if parts.query or parts.fragment:
        raise ConfigError(
            "REDIS_URL", "query parameters are not supported; use REDIS_TLS_CA_FILE and REDIS_PASSWORD_FILE"
        )
    db_text = parts.path.lstrip("/") or "0"
    if not db_text.isdigit():
        raise ConfigError("REDIS_URL", "the path must be a database number such as /0")
    url_password = unquote(parts.password) if parts.password else None
    if url_password and password:
        raise ConfigError("REDIS_URL", "carries a password and REDIS_PASSWORD/REDIS_PASSWORD_FILE is set too; keep one")
    username = unquote(parts.username) if parts.username else None
    return RedisSettings(
        host=parts.hostname,
        port=port or 6379,
        db=int(db_text),
        username=username or None,
        password=url_password or password,
        tls=parts.scheme == "rediss",
        tls_ca_file=tls_ca_file,
    )


def _otel_settings(env: Mapping[str, str]) -> OtelSettings:
    disabled = env_bool(env, "OTEL_SDK_DISABLED", False)
    exporters = env_list(env, "OTEL_TRACES_EXPORTER", ("otlp",))
    for name in exporters:
        if name not in TRACE_EXPORTERS:
            raise ConfigError(
                "OTEL_TRACES_EXPORTER", f"unsupported exporter {name!r}; use {', '.join(TRACE_EXPORTERS)}"
            )
    if "none" in exporters and len(exporters) > 1:
        raise ConfigError("OTEL_TRACES_EXPORTER", "'none' cannot be combined with other exporters")

    protocol_var = (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        if env_str(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        else ("OTEL_EXPORTER_OTLP_PROTOCOL")
    )
    protocol = env_choice(env, protocol_var, "http/protobuf", OTLP_PROTOCOLS)
    if (
        protocol == "grpc"
        and "otlp" in exporters
        and not disabled
        and find_spec("opentelemetry.exporter.otlp.proto.grpc") is None
    ):
        raise ConfigError(protocol_var, "grpc needs the gRPC exporter: install the package with its 'grpc' extra")

    endpoint = None
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        value = env_str(env, name)
        if value is None:
            continue
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(name, "expected an http:// or https:// URL")
        endpoint = value

    sampler = env_str(env, "OTEL_TRACES_SAMPLER")
    if sampler is not None and sampler not in SAMPLERS:
        raise ConfigError("OTEL_TRACES_SAMPLER", f"expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if sampler is not None and sampler.endswith("traceidratio"):
        env_float(env, "OTEL_TRACES_SAMPLER_ARG", 1.0, minimum=0.0, maximum=1.0)

    attributes = env_str(env, "OTEL_RESOURCE_ATTRIBUTES")
    if attributes is not None:
        for pair in attributes.split(","):
            if pair.strip() and not _RESOURCE_PAIR.match(pair.strip()):
                raise ConfigError(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    f"expected key=value pairs separated by commas, got {pair.strip()!r}",
                )
    return OtelSettings(
        sdk_disabled=disabled,
        traces_exporter=exporters,
        protocol=protocol,
        endpoint=endpoint,
        sdk_span_metrics=(env.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED") or "").strip().lower() == "true",
    )
