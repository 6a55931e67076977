"""The one broker both sides use: the API enqueues through it, the worker consumes through it.

Middleware order matters: tracing and metrics come first so that their after-hooks run last
(Dramatiq runs after-hooks in reverse), when `Retries` has already decided the message's fate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq import Broker, Middleware
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, MiddlewareError, default_middleware
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend, StubBackend
from redis.backoff import NoBackoff
from redis.retry import Retry

from .health import ProcessHeartbeat
from .job_arguments import ArgumentCheck
from .job_log import FailureLog
from .metrics import PrometheusMetrics
from .queues import REDIS_NAMESPACE
from .redis_delivery import LosslessRedisBroker
from .settings import Settings, load_settings
from .tracing import OpenTelemetryMiddleware

_broker: Broker | None = None
_broker_lock = threading.Lock()

_Hooks = tuple[tuple[Middleware, Callable[..., None]], ...]


class _DirectHooks:
    """Emits each signal only to the middleware that implement its hook.

    Dramatiq calls every middleware's hook for every signal, most of them the base class's no-op:
    with this stack that is 33 of 48 calls per message. Order, arguments and error handling are
    Dramatiq's own (a `MiddlewareError` from a before-hook propagates, anything else is logged).
    """

    middleware: list[Middleware]
    logger: Any
    _hooks: dict[str, _Hooks]
    _hooks_len = -1

    def add_middleware(self, middleware: Middleware, **where: Any) -> None:
        super().add_middleware(middleware, **where)  # type: ignore[misc]
        self._hooks_len = -1

    def _hooks_of(self, signal: str) -> _Hooks:
        if self._hooks_len != len(self.middleware):  # a middleware was added since
            self._hooks = {}
            self._hooks_len = len(self.middleware)
        hooks = self._hooks.get(signal)
        if hooks is None:
            base = getattr(Middleware, signal, None)
            hooks = self._hooks[signal] = tuple(
                (middleware, getattr(middleware, signal))
                for middleware in self.middleware
                if getattr(type(middleware), signal, None) is not base or signal in getattr(middleware, "__dict__", ())
            )
        return hooks

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        signal = "before_" + signal
        for middleware, hook in self._hooks_of(signal):
            try:
                hook(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", signal, middleware, exc_info=True)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        signal = "after_" + signal
        for middleware, hook in reversed(self._hooks_of(signal)):
            try:
                hook(self, *args, **kwargs)
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", signal, middleware, exc_info=True)


class _RedisBroker(_DirectHooks, LosslessRedisBroker):
    pass


class _StubBroker(_DirectHooks, StubBroker):
    pass


def build_broker(
    settings: Settings,
    *,
    tracing: OpenTelemetryMiddleware | None = None,
    metrics: PrometheusMetrics | None = None,
) -> Broker:
    """A new broker with this package's middleware stack (does not connect until used).

    `tracing` and `metrics` replace the default instances (tests inject their own provider/registry).
    """
    metrics = metrics or PrometheusMetrics()
    middleware = [
        tracing or OpenTelemetryMiddleware(record_arguments=settings.trace_arguments),
        metrics,
        ProcessHeartbeat(),
        CurrentMessage(),
        FailureLog(),
        ArgumentCheck(),
        *(middleware_class() for middleware_class in default_middleware),
    ]
    if settings.broker == "stub":
        if settings.result_ttl:
            middleware.append(Results(backend=StubBackend(), result_ttl=int(settings.result_ttl * 1000)))
        return _StubBroker(middleware=middleware)
    client = redis_client(settings)
    if settings.result_ttl:
        middleware.append(Results(backend=RedisBackend(client=client), result_ttl=int(settings.result_ttl * 1000)))
    return _RedisBroker(
        client=client,
        middleware=middleware,
        namespace=REDIS_NAMESPACE,
        dead_lettered=metrics.dead_lettered,
        heartbeat_timeout=int(settings.heartbeat_timeout * 1000),
    )


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
