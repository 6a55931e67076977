"""The naive reference: OpenTelemetry for Dramatiq written the obvious way, as most projects would.

A PRODUCER span per enqueue with the context injected into the message options, a CONSUMER span per
delivery with the context extracted, the SDK's BatchSpanProcessor and an exporter that drops every
batch (the cost of encoding and sending is left out on purpose: this anchors what the middleware
and the SDK cost alone). Nothing here is optimised.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from dramatiq import Middleware
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode


class NoopExporter(SpanExporter):
    """Accepts every batch and does nothing with it."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def install_noop_sdk(service_name: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
    trace.set_tracer_provider(provider)
    return provider


class NaiveOpenTelemetry(Middleware):
    def __init__(self, configure_sdk: bool = True) -> None:
        self._configure_sdk = configure_sdk
        self._local = threading.local()

    @property
    def _tracer(self) -> trace.Tracer:
        return trace.get_tracer("bench.naive_otel")

    def after_process_boot(self, broker: Any) -> None:
        if self._configure_sdk:
            install_noop_sdk("bench-naive")

    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        if "otel" in message.options:
            return
        span = self._tracer.start_span(
            f"send {message.queue_name}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "dramatiq",
                "messaging.operation.type": "send",
                "messaging.destination.name": message.queue_name,
                "messaging.message.id": message.message_id,
                "dramatiq.actor.name": message.actor_name,
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        message.options["otel"] = carrier
        self._local.send_span = span

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        span = getattr(self._local, "send_span", None)
        if span is not None:
            span.end()
            self._local.send_span = None

    def before_process_message(self, broker: Any, message: Any) -> None:
        parent = propagate.extract(message.options.get("otel", {}))
        span = self._tracer.start_span(
            f"process {message.queue_name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "dramatiq",
                "messaging.operation.type": "process",
                "messaging.destination.name": message.queue_name,
                "messaging.message.id": message.message_id,
                "dramatiq.actor.name": message.actor_name,
                "dramatiq.message.retries": message.options.get("retries", 0),
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        self._local.process = (span, token)

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        span, token = self._local.process
        if exception is not None:
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, str(exception)))
        span.end()
        context.detach(token)

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self.after_process_message(broker, message)
