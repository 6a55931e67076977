"""Tracing for a process that enqueues (the API): `DramatiqTracing.setup()` at start, `shutdown()` at exit.

The setup guide imports it as `dramatiq_otlp_middleware` (an alias module of this one). Both orders work:

- the guide's: the application sets its own broker first, then sets up tracing and imports the actors::

    broker = RedisBroker(url=REDIS_URL)
    dramatiq.set_broker(broker)
    DramatiqTracing.setup(service_name="wp-k8s-service-worker")  # traces `broker`
    from worker_app.tasks import clone_wordpress  # declared on `broker`, sent through it

- the package's broker, built from `REDIS_*` (FastAPI; the README's version is executed by
  `tests/worker/test_api_usage.py`)::

    from worker_app.producer import DramatiqTracing
    from worker_app.tasks import clone_wordpress

    @asynccontextmanager
    async def lifespan(app):
        DramatiqTracing.setup(service_name="wp-k8s-service")
        yield
        DramatiqTracing.shutdown()
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .observability.telemetry import configure_tracing, shutdown_tracing
from .observability.tracing import OpenTelemetryMiddleware
from .runtime.broker import install_tracing, sdk_config
from .runtime.process import application_broker, process_broker, process_settings

if TYPE_CHECKING:
    from dramatiq import Broker
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["DramatiqTracing"]


class DramatiqTracing:
    """The seed's entry point, kept for code written against it: the SDK and the broker's tracing.

    `setup` configures the OpenTelemetry SDK of the calling process from `OTEL_*` (or keeps the one
    `opentelemetry-instrument` configured) and makes sure the broker traces sends, so each enqueue is
    a `send <queue>` span, child of the current (request) span. `shutdown` flushes the spans.

    Example::

        DramatiqTracing.setup(service_name="wp-k8s-service")
        clone_wordpress.send(source_url, target_url, {})
        DramatiqTracing.shutdown()
    """

    @staticmethod
    def setup(service_name: str | None = None, *, broker: Broker | None = None) -> TracerProvider | None:
        """Configure the SDK and the broker's tracing; returns the SDK's provider (None when disabled).

        :param service_name: the service name of this process's spans (default: the settings').
        :param broker: the broker to trace. Default: the one the application set with
          `dramatiq.set_broker()` when it set one; otherwise this package's (`REDIS_*`), which
          becomes the global broker and the one `worker_app.tasks` declares its actors on. Never a
          broker to localhost that nobody asked for (`dramatiq.get_broker()` is not called).

        Actors declared on that broker before or after this call are traced alike (tracing hooks
        the broker's sends, not the actors). Call it after `dramatiq.set_broker()`: a broker set
        later is not the one traced. Calling it again changes nothing on a broker already traced.
        """
        settings = process_settings()
        if service_name:
            settings = dataclasses.replace(settings, service_name=service_name)
        sdk = sdk_config(settings)
        provider = configure_tracing(sdk)
        install_tracing(
            broker or application_broker() or process_broker(),
            tracing=OpenTelemetryMiddleware(record_arguments=settings.trace_arguments, sdk=sdk),
        )
        return provider

    @staticmethod
    def shutdown(timeout: float | None = None) -> bool:
        """Flush spans at application shutdown, waiting at most `timeout` seconds
        (default: `WORKER_TELEMETRY_FLUSH_TIMEOUT`)."""
        return shutdown_tracing(process_settings().telemetry_flush_timeout if timeout is None else timeout)
