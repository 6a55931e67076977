"""The one broker both sides use: the API enqueues through it, the worker consumes through it.

Middleware order matters: tracing and metrics come first so that their after-hooks run last
(Dramatiq runs after-hooks in reverse), when `Retries` has already decided the message's fate.
"""

from __future__ import annotations

import threading

import dramatiq
import redis
from dramatiq import Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, default_middleware
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend, StubBackend
from redis.backoff import NoBackoff
from redis.retry import Retry

from .health import ProcessHeartbeat
from .job_log import FailureLog
from .metrics import PrometheusMetrics
from .queues import REDIS_NAMESPACE
from .settings import Settings, load_settings
from .tracing import OpenTelemetryMiddleware

_broker: Broker | None = None
_broker_lock = threading.Lock()


def build_broker(
    settings: Settings,
    *,
    tracing: OpenTelemetryMiddleware | None = None,
    metrics: PrometheusMetrics | None = None,
) -> Broker:
    """A new broker with this package's middleware stack (does not connect until used).

    `tracing` and `metrics` replace the default instances (tests inject their own provider/registry).
    """
    middleware = [
        tracing or OpenTelemetryMiddleware(record_arguments=settings.trace_arguments),
        metrics or PrometheusMetrics(),
        ProcessHeartbeat(),
        CurrentMessage(),
        FailureLog(),
        *(middleware_class() for middleware_class in default_middleware),
    ]
    if settings.broker == "stub":
        if settings.result_ttl:
            middleware.append(Results(backend=StubBackend(), result_ttl=int(settings.result_ttl * 1000)))
        return StubBroker(middleware=middleware)
    client = redis_client(settings)
    if settings.result_ttl:
        middleware.append(Results(backend=RedisBackend(client=client), result_ttl=int(settings.result_ttl * 1000)))
    return RedisBroker(client=client, middleware=middleware, namespace=REDIS_NAMESPACE)


def redis_client(settings: Settings, *, socket_timeout: float | None = None, fail_fast: bool = False) -> redis.Redis:
    """A client of the configured Redis.

    `fail_fast`: one attempt, with connect and read bounded by `socket_timeout`, for callers that
    must answer on time whatever Redis does (a `/metrics` scrape). redis-py otherwise retries a
    failed command with back-off, which made a scrape take seconds while Redis was down.
    """
    kwargs = settings.redis.client_kwargs()
    if socket_timeout is not None:
        kwargs["socket_timeout"] = socket_timeout
    if fail_fast:
        kwargs["retry"] = Retry(NoBackoff(), 0)
        kwargs["retry_on_timeout"] = False
        if socket_timeout is not None:
            kwargs["socket_connect_timeout"] = socket_timeout
    return redis.Redis(**kwargs)  # type: ignore[arg-type]


def get_broker() -> Broker:
    """The process-wide broker, built from the environment on first use and set as Dramatiq's global."""
    global _broker  # noqa: PLW0603 - Dramatiq itself keeps one global broker
    with _broker_lock:
        if _broker is None:
            _broker = build_broker(load_settings())
            dramatiq.set_broker(_broker)
        return _broker


def install_tracing(broker: Broker) -> None:
    """Make sure `broker` traces, with the middleware first in line (see the module docstring)."""
    if any(isinstance(middleware, OpenTelemetryMiddleware) for middleware in broker.middleware):
        return
    if broker.middleware:
        broker.add_middleware(OpenTelemetryMiddleware(), before=type(broker.middleware[0]))
    else:
        broker.add_middleware(OpenTelemetryMiddleware())
