"""OpenTelemetry SDK lifecycle for one process: configure from `OTEL_*`, flush within a bound.

The SDK's batch processor runs a thread, which does not survive a fork, so each Dramatiq worker
process configures its own SDK after it starts (`after_process_boot`). Shutdown is bounded: a dead
or slow collector can cost at most `WORKER_TELEMETRY_FLUSH_TIMEOUT` seconds, never the SDK's own
30 s, and never blocks message processing (spans only go into a bounded in-memory queue).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.distro import OpenTelemetryConfigurator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import Counter

from .settings import Settings

logger = logging.getLogger(__name__)

#: Defaults that differ from the bare SDK's: traces over OTLP/HTTP, and no OTel metrics or logs
#: (metrics are Prometheus', logs go to stdout as JSON). Explicit `OTEL_*` values always win.
_SDK_DEFAULTS = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
}

# registry=None: worker processes export through prometheus_client's multiprocess files, which the
# metrics server aggregates whatever registry a metric was created in.
SPANS_DROPPED = Counter(
    "worker_telemetry_spans_dropped",
    "Spans that never reached the collector, by reason (export_failed: the collector refused or was "
    "unreachable; queue_full: spans ended faster than they could be exported).",
    ["reason"],
    registry=None,
)


class _CountingExporter(SpanExporter):
    """Counts the spans of every batch the wrapped exporter failed to deliver, and remembers whether
    the collector answered last time (a shutdown does not wait for a collector known to be down)."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._failed = SPANS_DROPPED.labels("export_failed")
        self.last_export_failed = False
        self._shut_down = False
        _exporters.append(self)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            self.last_export_failed = True
            self._failed.inc(len(spans))
            raise
        self.last_export_failed = result is not SpanExportResult.SUCCESS
        if self.last_export_failed:
            self._failed.inc(len(spans))
        return result

    def shutdown(self) -> None:
        if not self._shut_down:  # called early by shutdown_tracing, then again by the processor
            self._shut_down = True
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, with every lost span counted in `worker_telemetry_spans_dropped`."""

    def __init__(self, exporter: SpanExporter) -> None:
        super().__init__(_CountingExporter(exporter))
        self._queue_full = SPANS_DROPPED.labels("queue_full")

    def on_end(self, span: ReadableSpan) -> None:
        # The SDK drops the oldest span when its queue is full and only logs it; count it here.
        batch = getattr(self, "_batch_processor", None)
        queue = getattr(batch, "_queue", None)
        if queue is not None and len(queue) >= getattr(batch, "_max_queue_size", 2048):
            self._queue_full.inc()
        super().on_end(span)


@dataclass(frozen=True, slots=True)
class _Configured:
    pid: int
    provider: TracerProvider | None
    owned: bool


_configured: _Configured | None = None
_lock = threading.Lock()
#: The exporters of this process's SDK, so that shutdown can abort their retries.
_exporters: list[_CountingExporter] = []


def configure_tracing(settings: Settings) -> TracerProvider | None:
    """Configure the SDK for this process from `OTEL_*` (once per process; later calls are no-ops).

    Returns None when tracing is disabled. A provider set up by someone else (e.g. the app runs under
    `opentelemetry-instrument`) is used as it is.
    """
    global _configured  # noqa: PLW0603 - one SDK per process is the point
    with _lock:
        if _configured is not None and _configured.pid == os.getpid():
            return _configured.provider
        if settings.otel.sdk_disabled:
            _configured = _Configured(os.getpid(), None, owned=False)
            return None
        existing = trace.get_tracer_provider()
        if isinstance(existing, TracerProvider):
            _configured = _Configured(os.getpid(), existing, owned=False)
            return existing
        for name, value in _SDK_DEFAULTS.items():
            os.environ.setdefault(name, value)
        OpenTelemetryConfigurator().configure(
            resource_attributes={"service.name": settings.service_name},
            export_span_processor=CountingBatchSpanProcessor,
        )
        provider = trace.get_tracer_provider()
        sdk_provider = provider if isinstance(provider, TracerProvider) else None
        _configured = _Configured(os.getpid(), sdk_provider, owned=sdk_provider is not None)
        logger.debug("OpenTelemetry SDK configured", extra={"service_name": settings.service_name})
        return _configured.provider


def shutdown_tracing(timeout: float) -> bool:
    """Flush and stop the SDK this module configured, waiting at most `timeout` seconds.

    Returns True when everything was flushed in time. Runs the SDK's shutdown in a daemon thread so
    that a collector that does not answer cannot hold the process past the bound.
    """
    configured = _configured
    if configured is None or not configured.owned or configured.provider is None:
        return True
    if configured.pid != os.getpid():
        return True
    provider = configured.provider
    exporters = [exporter for exporter in _exporters if exporter.last_export_failed]
    if exporters:
        # The collector did not answer the last export: abort the exporter's retry back-off now
        # instead of waiting it out; what is still queued fails fast and is counted as dropped.
        logger.warning("Collector unreachable at shutdown; unsent spans are dropped")
        for exporter in exporters:
            exporter.shutdown()
    finished = threading.Event()

    def _shutdown() -> None:
        try:
            provider.shutdown()
        finally:
            finished.set()

    threading.Thread(target=_shutdown, name="otel-shutdown", daemon=True).start()
    if not finished.wait(timeout):
        logger.warning("Telemetry flush did not finish within %.1fs; unsent spans are dropped", timeout)
        return False
    return True
