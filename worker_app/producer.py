"""Tracing for a process that enqueues (the API): `DramatiqTracing.setup()` at start, `shutdown()` at exit.

Example (FastAPI; the README's version is executed by `tests/worker/test_api_usage.py`)::

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
from .runtime.process import process_broker, process_settings

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
        :param broker: the broker to trace (default: the process-wide one `worker_app.tasks` uses).
        """
        settings = process_settings()
        if service_name:
            settings = dataclasses.replace(settings, service_name=service_name)
        sdk = sdk_config(settings)
        provider = configure_tracing(sdk)
        install_tracing(
            broker or process_broker(),
            tracing=OpenTelemetryMiddleware(record_arguments=settings.trace_arguments, sdk=sdk),
        )
        return provider

    @staticmethod
    def shutdown(timeout: float | None = None) -> bool:
        """Flush spans at application shutdown, waiting at most `timeout` seconds
        (default: `WORKER_TELEMETRY_FLUSH_TIMEOUT`)."""
        return shutdown_tracing(process_settings().telemetry_flush_timeout if timeout is None else timeout)
