"""OpenTelemetry SDK lifecycle for one process: configure from `OTEL_*`, flush within a bound.

The SDK's batch processor runs a thread, which does not survive a fork, so each Dramatiq worker
process configures its own SDK after it starts (`after_process_boot`). Shutdown is bounded: a dead
or slow collector can cost at most `WORKER_TELEMETRY_FLUSH_TIMEOUT` seconds, never the SDK's own
30 s, and never blocks message processing (spans only go into a bounded in-memory queue).

The SDK's configurator reads its own settings (`OTEL_*`) from the environment only; this module
adds its defaults there (`_SDK_DEFAULTS`) and reads nothing else from it: what it needs of ours
comes in an `SdkConfig`.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry import trace

# The SDK's configurator itself: `opentelemetry.distro.OpenTelemetryConfigurator` is an empty subclass
# of it, and importing the distro also loads opentelemetry-instrumentation into every process.
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import Counter

logger = logging.getLogger("worker_app.telemetry")  # its name from before the split: log queries select on it

#: Defaults that differ from the bare SDK's: traces over OTLP/HTTP, and no OTel metrics or logs
#: (metrics are Prometheus', logs go to stdout as JSON). Explicit `OTEL_*` values always win.
_SDK_DEFAULTS = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
}

#: An export unanswered for this long at shutdown means the collector is not there (one that is
#: answers in milliseconds; the exporter is retrying with back-off): abort it instead of waiting.
_STUCK_AFTER = 0.5
#: While the collector is not answering (its last export failed, or the one in progress has waited
#: this long), the queue keeps at most `_OUTAGE_QUEUE_SIZE` spans instead of its whole OTEL_BSP_MAX_QUEUE_SIZE.
#: The exporter reports a refused connection only after all its retries (about 10 s), so waiting is
#: the first sign of an outage; 2 s let a busy worker queue 2,000+ spans first, whose memory the
#: process kept for the rest of the outage (+2 MB RSS, docs/benchmarks.md).
_DOWN_AFTER = 0.5
#: Spans kept for when the collector is back, besides the batch the exporter is retrying (at most one
#: export batch, OTEL_BSP_MAX_EXPORT_BATCH_SIZE). Keeping a whole 512-span batch made an outage cost a
#: worker process 0.8-1.1 MB of RSS over the collector being up; 64 spans, 0.2-0.8 MB
#: (docs/benchmarks.md). What more would be kept is only the last instant of an outage anyway.
_OUTAGE_QUEUE_SIZE = 64
#: The SDK logs a warning for every span it drops from a full queue (thousands a second when the
#: collector is down); its logger is raised to ERROR and one line a minute says it instead.
_QUEUE_FULL_LOG_INTERVAL = 60.0
_SDK_QUEUE_LOGGER = "opentelemetry.sdk._shared_internal"
_WATCH_INTERVAL = 0.1
#: After an export the collector did not take, the cyclic garbage is collected: every failed HTTP
#: attempt leaves a reference cycle (requests' and urllib3's exception chains and their frames) holding
#: the request and its encoded batch, which only a full collection frees. Left to the automatic
#: collector, an outage grew a worker's RSS by 4 MB per 100,000 messages (docs/benchmarks.md).
#: Collections are at least this many seconds apart...
_COLLECT_INTERVAL = 5.0
#: ...and at least this many times their own duration: a full collection holds the GIL while it walks
#: the heap, 2-3 ms in a worker (its boot heap is frozen, `runtime.boot_heap`) but ~150 ms in a
#: process with a large unfrozen heap (the API), which then collects every 15 s at most (1% of its time).
_COLLECT_COST_FACTOR = 100

# registry=None: worker processes export through prometheus_client's multiprocess files, which the
# metrics server aggregates whatever registry a metric was created in.
SPANS_DROPPED = Counter(
    "worker_telemetry_spans_dropped",
    "Spans that never reached the collector, by reason (export_failed: the collector refused or was "
    "unreachable; queue_full: spans ended faster than they could be exported, or while the collector "
    f"was not answering beyond a reserve of {_OUTAGE_QUEUE_SIZE} spans).",
    ["reason"],
    registry=None,
)


class _CountingExporter(SpanExporter):
    """Counts the spans of every batch the wrapped exporter failed to deliver, and remembers whether
    the collector answered last time and since when an export is waiting for it (a shutdown does not
    wait for a collector that is down)."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._failed = SPANS_DROPPED.labels("export_failed")
        self.last_export_failed = False
        #: time.monotonic() when the export in progress began, None between exports
        self.export_started: float | None = None
        self._shut_down = False
        self._next_collection = 0.0
        _exporters.append(self)

    def down(self, now: float) -> bool:
        """The collector refused the last export, or has left this one unanswered for `_DOWN_AFTER`."""
        started = self.export_started
        return self.last_export_failed or (started is not None and now - started >= _DOWN_AFTER)

    def stuck(self, now: float) -> bool:
        """The collector did not answer the last export, or has not answered this one for a while
        (the exporter is retrying: a collector that is up answers in milliseconds)."""
        started = self.export_started
        return self.last_export_failed or (started is not None and now - started >= _STUCK_AFTER)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.export_started = time.monotonic()
        try:
            result = self._inner.export(spans)
        except Exception:
            self.last_export_failed = True
            self._failed.inc(len(spans))
            self._collect_garbage()
            raise
        finally:
            self.export_started = None
        self.last_export_failed = result is not SpanExportResult.SUCCESS
        if self.last_export_failed:
            self._failed.inc(len(spans))
            self._collect_garbage()
        return result

    def _collect_garbage(self) -> None:
        started = time.monotonic()
        if started >= self._next_collection:
            gc.collect()
            took = time.monotonic() - started
            self._next_collection = started + max(_COLLECT_INTERVAL, took * _COLLECT_COST_FACTOR)

    @property
    def shut_down(self) -> bool:
        return self._shut_down

    def shutdown(self) -> None:
        if not self._shut_down:  # called early by shutdown_tracing, then again by the processor
            self._shut_down = True
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, with every lost span counted in `worker_telemetry_spans_dropped`.

    Spans the collector refused or never received count as `export_failed`; spans dropped from a
    full queue (or beyond a reserve of `_OUTAGE_QUEUE_SIZE` spans while the collector is not answering)
    as `queue_full`.

    :param exporter: the exporter to send batches with. Positional: the SDK's configurator
      constructs its `export_span_processor` with the exporter as the only argument.

    Example::

        provider = TracerProvider()
        provider.add_span_processor(CountingBatchSpanProcessor(OTLPSpanExporter()))
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = _CountingExporter(exporter)
        super().__init__(self._exporter)
        self._queue_full = SPANS_DROPPED.labels("queue_full")
        # The SDK's queue (a deque the SDK clears, not replaces, after a fork) and its bounds, looked
        # up once rather than per span.
        batch = getattr(self, "_batch_processor", None)
        self._span_queue = getattr(batch, "_queue", None)
        self._span_queue_size = getattr(batch, "_max_queue_size", 2048)
        self._outage_queue_size = min(
            _OUTAGE_QUEUE_SIZE, getattr(batch, "_max_export_batch_size", 512), self._span_queue_size
        )
        self._queue_full_logged = -_QUEUE_FULL_LOG_INTERVAL
        self._encode_span = _span_encoder(exporter)

    def on_end(self, span: ReadableSpan) -> None:
        queue = self._span_queue
        if queue is not None and len(queue) >= self._outage_queue_size:
            if len(queue) >= self._span_queue_size:
                # The SDK drops the oldest span of a full queue and only logs it; count it here.
                self._count_dropped()
            elif self._exporter.down(time.monotonic()):
                # The collector is not answering: keep a small reserve for when it is back and drop the
                # rest now. Holding the whole queue (2048 spans by default) costs memory in every
                # process during an outage and saves nothing that outlasts it (docs/benchmarks.md).
                self._count_dropped()
                return
        encode = self._encode_span
        if encode is not None:
            context = span.context
            if context is not None and context.trace_flags.sampled:  # what the SDK queues
                # Queued in wire format: see `fastpath.otlp_encoding` (same request, less memory held).
                span = encode(span)  # type: ignore[assignment]
        super().on_end(span)

    def _count_dropped(self) -> None:
        self._queue_full.inc()
        now = time.monotonic()
        if now - self._queue_full_logged >= _QUEUE_FULL_LOG_INTERVAL:
            self._queue_full_logged = now
            logger.warning(
                "Span queue full (collector down or too slow): dropping spans, "
                "counted in worker_telemetry_spans_dropped_total"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class SdkConfig:
    """What this package decides about the SDK of a process (the SDK reads the rest from `OTEL_*`).

    :param service_name: `service.name` of the resource.
    :param disabled: `OTEL_SDK_DISABLED`: configure nothing, trace nothing.
    :param flush_timeout: seconds a shutdown may spend flushing spans.

    Example::

        config = SdkConfig(service_name="wp-k8s-service-worker", disabled=False, flush_timeout=5.0)
        configure_tracing(config)
        ...
        shutdown_tracing(config.flush_timeout)
    """

    service_name: str
    disabled: bool
    flush_timeout: float


@dataclass(frozen=True, slots=True)
class _Configured:
    pid: int
    provider: TracerProvider | None
    owned: bool


_configured: _Configured | None = None
_lock = threading.Lock()
#: The exporters of this process's SDK, so that shutdown can abort their retries.
_exporters: list[_CountingExporter] = []


def configure_tracing(config: SdkConfig) -> TracerProvider | None:
    """Configure the SDK for this process from `OTEL_*` (once per process; later calls are no-ops).

    Returns None when tracing is disabled. A provider set up by someone else (e.g. the app runs under
    `opentelemetry-instrument`) is used as it is.
    """
    global _configured  # noqa: PLW0603 - one SDK per process is the point
    with _lock:
        if _configured is not None and _configured.pid == os.getpid():
            return _configured.provider
        if config.disabled:
            _configured = _Configured(os.getpid(), None, owned=False)
            return None
        existing = trace.get_tracer_provider()
        if isinstance(existing, TracerProvider):
            _configured = _Configured(os.getpid(), existing, owned=False)
            return existing
        for name, value in _SDK_DEFAULTS.items():
            os.environ.setdefault(name, value)
        _use_fast_otlp_encoding()
        sdk_queue_logger = logging.getLogger(_SDK_QUEUE_LOGGER)
        if sdk_queue_logger.level < logging.ERROR:
            sdk_queue_logger.setLevel(logging.ERROR)
        _OTelSDKConfigurator().configure(  # type: ignore[no-untyped-call]
            resource_attributes={SERVICE_NAME: config.service_name},
            export_span_processor=CountingBatchSpanProcessor,
        )
        provider = trace.get_tracer_provider()
        sdk_provider = provider if isinstance(provider, TracerProvider) else None
        _configured = _Configured(os.getpid(), sdk_provider, owned=sdk_provider is not None)
        logger.debug("OpenTelemetry SDK configured", extra={"service_name": config.service_name})
        return _configured.provider


def _use_fast_otlp_encoding() -> None:
    try:
        from ..fastpath.otlp_encoding import use_fast_otlp_encoding  # noqa: PLC0415 - exporter modules, only now
    except ImportError:  # no OTLP exporter installed: nothing to speed up
        return
    use_fast_otlp_encoding()


def _span_encoder(exporter: SpanExporter) -> Callable[[ReadableSpan], object] | None:
    """How `CountingBatchSpanProcessor` queues finished spans for `exporter` (None: as they are)."""
    try:
        from ..fastpath.otlp_encoding import span_encoder  # noqa: PLC0415 - exporter modules, only now
    except ImportError:  # no OTLP exporter installed
        return None
    return span_encoder(exporter)


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
    finished = threading.Event()

    def _shutdown() -> None:
        try:
            provider.shutdown()
        finally:
            finished.set()

    deadline = time.monotonic() + timeout
    _abort_stuck_exports()
    threading.Thread(target=_shutdown, name="otel-shutdown", daemon=True).start()
    # While the flush runs, watch for an export the collector does not answer (it may begin only now,
    # with the spans still queued) and abort its retries rather than wait them out.
    while not finished.wait(min(_WATCH_INTERVAL, max(deadline - time.monotonic(), 0))):
        if time.monotonic() >= deadline:
            logger.warning("Telemetry flush did not finish within %.1fs; unsent spans are dropped", timeout)
            return False
        _abort_stuck_exports()
    return True


def _abort_stuck_exports() -> None:
    now = time.monotonic()
    stuck = [exporter for exporter in _exporters if not exporter.shut_down and exporter.stuck(now)]
    if stuck:
        # Abort the exporter's retry back-off now; what is still queued fails fast and is counted
        # as dropped.
        logger.warning("Collector unreachable at shutdown; unsent spans are dropped")
        for exporter in stuck:
            exporter.shutdown()
