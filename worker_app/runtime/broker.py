"""The one broker both sides use: the API enqueues through it, the worker consumes through it.

`build_broker(settings)` composes it: Redis (or Dramatiq's stub broker) with this package's
middleware, each given what it needs from the settings. The order of the middleware is decided
here and only here (see `build_broker`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis
from dramatiq import Broker, Middleware
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, default_middleware
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend, StubBackend
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..config.queues import REDIS_NAMESPACE
from ..fastpath.direct_hooks import DirectHooks
from ..observability.delivery import DeliveryTracker
from ..observability.failure_log import FailureLog
from ..observability.metrics import PrometheusMetrics
from ..observability.telemetry import SdkConfig
from ..observability.tracing import OpenTelemetryMiddleware
from .boot_heap import FreezeBootHeap
from .health import ProcessHeartbeat
from .job_arguments import ArgumentCheck
from .redis_delivery import LosslessRedisBroker

if TYPE_CHECKING:
    from .settings import Settings


class FastRedisBroker(DirectHooks, LosslessRedisBroker):
    """`LosslessRedisBroker` (Dramatiq's `RedisBroker` that never drops a message) with `DirectHooks`
    signal dispatch."""


class FastStubBroker(DirectHooks, StubBroker):
    """Dramatiq's `StubBroker` with `DirectHooks` signal dispatch (same behaviour)."""


def build_broker(
    settings: Settings,
    *,
    tracing: OpenTelemetryMiddleware | None = None,
    metrics: PrometheusMetrics | None = None,
) -> Broker:
    """A new broker with this package's middleware stack (does not connect until used).

    :param settings: the process's settings.
    :param tracing: replaces the default tracing middleware (tests give one with their own provider).
    :param metrics: replaces the default metrics middleware (tests give one with their own registry).

    The middleware order, the one rule about it:

    1. `CurrentMessage`, then `DeliveryTracker`, both before Dramatiq's defaults. After-hooks run in
       reverse order, so the tracker's runs after `Retries` has failed or re-enqueued the message
       (the outcome it decides is final) and before `CurrentMessage` forgets the message (the
       failure log line still names the job). The tracker's observers are told of the end in
       reverse: the failure log, then metrics, then tracing, whose span stays current until last.
    2. The tracker before tracing: a retry is noticed (and linked to the attempt that failed)
       before tracing looks at the re-enqueued message's context.

    3. `ArgumentCheck` anywhere before an actor is declared (it wraps actors as they are declared).

    Nothing else depends on the order.
    """
    tracing = tracing or OpenTelemetryMiddleware(
        record_arguments=settings.trace_arguments,
        sdk=sdk_config(settings),
        light_spans=not settings.otel.sdk_span_metrics,
    )
    metrics = metrics or PrometheusMetrics(exemplar_dir=settings.multiproc_dir)
    deliveries = DeliveryTracker(observers=[tracing, metrics, FailureLog()])
    middleware: list[Middleware] = [
        CurrentMessage(),
        deliveries,
        tracing,
        metrics,
        ProcessHeartbeat(directory=settings.multiproc_dir),
        ArgumentCheck(),
        *(middleware_class() for middleware_class in default_middleware),
        FreezeBootHeap(),  # its before_worker_boot last: after every other middleware's
    ]
    result_ttl = int(settings.result_ttl * 1000)
    if settings.broker == "stub":
        if result_ttl:
            middleware.append(Results(backend=StubBackend(), result_ttl=result_ttl))
        return FastStubBroker(middleware=middleware)
    client = redis_client(settings)
    if result_ttl:
        middleware.append(Results(backend=RedisBackend(client=client), result_ttl=result_ttl))
    return FastRedisBroker(
        client=client,
        middleware=middleware,
        namespace=REDIS_NAMESPACE,
        dead_lettered=metrics.dead_lettered,
        heartbeat_timeout=int(settings.heartbeat_timeout * 1000),
    )


def sdk_config(settings: Settings) -> SdkConfig:
    """What the OpenTelemetry SDK of a process is configured with (the SDK reads the rest from `OTEL_*`)."""
    return SdkConfig(
        service_name=settings.service_name,
        disabled=settings.otel.sdk_disabled,
        flush_timeout=settings.telemetry_flush_timeout,
    )


def redis_client(settings: Settings, *, socket_timeout: float | None = None, fail_fast: bool = False) -> redis.Redis:
    """A client of the configured Redis.

    :param socket_timeout: bound of each read (and, with `fail_fast`, of connecting).
    :param fail_fast: one attempt, for callers that must answer on time whatever Redis does (a
      `/metrics` scrape); redis-py otherwise retries a failed command with back-off, which made a
      scrape take seconds while Redis was down.
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


def install_tracing(broker: Broker, *, tracing: OpenTelemetryMiddleware) -> None:
    """Make sure `broker` (one this package did not build) traces, keeping `build_broker`'s order.

    A broker that already has tracing is left as it is. Otherwise `tracing` and a `DeliveryTracker`
    observing it go first in line.
    """
    if any(isinstance(middleware, OpenTelemetryMiddleware) for middleware in broker.middleware):
        return
    if broker.middleware:
        broker.add_middleware(tracing, before=type(broker.middleware[0]))
    else:
        broker.add_middleware(tracing)
    broker.add_middleware(DeliveryTracker(observers=[tracing]), before=OpenTelemetryMiddleware)
