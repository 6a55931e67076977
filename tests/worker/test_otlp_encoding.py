"""The hand-written OTLP encoder decodes to exactly what the SDK's encoder produces."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from worker_app.fastpath import otlp_encoding
from worker_app.fastpath.light_span import LightSpan, SpanStarter
from worker_app.fastpath.otlp_encoding import encode_spans_to_bytes
from worker_app.observability.conventions import SCHEMA_URL
from worker_app.observability.telemetry import CountingBatchSpanProcessor
from wp_devsupport.otlp_receiver import OtlpReceiver


def _decoded(data: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(data)
    return request


def _spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc", "k8s.pod.name": "pod-ü"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    other = TracerProvider(resource=Resource.create({"service.name": "other"}))
    other.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("worker_app.tracing", "0.1.0", schema_url="https://opentelemetry.io/schemas/1.27.0")
    plain = provider.get_tracer("plain")
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v")]))
    parent = set_span_in_context(NonRecordingSpan(remote))
    attributes = {
        "str": "dramatiq",
        "empty": "",
        "unicode": "é—😀",
        "true": True,
        "false": False,
        "zero": 0,
        "int": 123456789012,
        "negative": -42,
        "float": 1.5,
        "float_zero": 0.0,
        "strings": ["a", "", "b"],
        "ints": [1, -2, 3],
        "bools": [True, False],
        "floats": [0.5, -1.0],
    }
    with tracer.start_as_current_span(
        "process clone-queue", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        span.add_event("exception", {"exception.type": "ValueError", "exception.message": "bad"})
        span.add_event("bare")
        span.set_status(Status(StatusCode.ERROR, "ValueError: bad"))
        with plain.start_as_current_span(
            "child", links=[Link(remote, {"dramatiq.link.type": "previous_attempt"}), Link(span.get_span_context())]
        ):
            pass
    tracer.start_span("send q", kind=SpanKind.PRODUCER).end()
    tracer.start_span("ok").set_status(Status(StatusCode.OK))
    ok = tracer.start_span("ok-ended")
    ok.set_status(Status(StatusCode.OK))
    ok.end()
    other.get_tracer("x").start_span("", kind=SpanKind.SERVER).end()
    # Limits that drop everything: only the dropped counts are left to encode.
    limited = TracerProvider(span_limits=SpanLimits(max_span_attributes=0, max_events=0, max_links=0))
    limited.add_span_processor(SimpleSpanProcessor(exporter))
    with limited.get_tracer("limited").start_as_current_span("all dropped", attributes={"a": 1}, links=[Link(remote)]):
        trace.get_current_span().add_event("gone")
    return exporter.get_finished_spans()


def test_same_request_as_the_sdk_encoder():
    spans = _spans()
    assert len(spans) >= 5
    expected = _decoded(encode_spans(spans).SerializePartialToString())
    assert _decoded(encode_spans_to_bytes(spans)) == expected
    # Twice: the second time from the resource, scope and key caches.
    assert _decoded(encode_spans_to_bytes(spans)) == expected


def _span_only_the_sdk_encodes() -> ReadableSpan:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("t").start_span("big")
    span._attributes._dict["huge"] = 2**70  # what a misbehaving instrumentation could leave behind
    span.end()
    return exporter.get_finished_spans()[0]


def test_values_the_sdk_skips_fall_back_to_the_sdk_encoder():
    spans = [_span_only_the_sdk_encodes()]
    assert _decoded(encode_spans_to_bytes(spans)) == _decoded(encode_spans(spans).SerializePartialToString())


def test_a_readable_span_subclass_is_read_through_its_public_interface():
    # The SDK's own ReadableSpan is read field by field; anything else may compute its properties.
    class Renamed(ReadableSpan):
        @property
        def name(self) -> str:
            return "renamed " + self._name

        @property
        def attributes(self):
            return {"computed": True, **(self._attributes or {})}

    spans = [
        Renamed(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=span.attributes,
            events=span.events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        for span in _spans()
    ]
    decoded = _decoded(encode_spans_to_bytes(spans))
    assert decoded == _decoded(encode_spans(spans).SerializePartialToString())
    names = [span.name for group in decoded.resource_spans for scope in group.scope_spans for span in scope.spans]
    assert names
    assert all(name.startswith("renamed ") for name in names)


def test_a_readable_span_built_by_hand_with_any_mapping_and_sequences():
    # The SDK hands processors BoundedAttributes and BoundedLists; a ReadableSpan built by other code
    # (a processor that copies spans, a test) may hold a read-only mapping and plain tuples.
    source = next(span for span in _spans() if span.name == "process clone-queue")
    span = ReadableSpan(
        name=source.name,
        context=source.context,
        parent=source.parent,
        resource=source.resource,
        attributes=MappingProxyType(dict(source.attributes)),
        events=tuple(source.events),
        links=list(source.links),
        kind=source.kind,
        status=source.status,
        start_time=source.start_time,
        end_time=source.end_time,
        instrumentation_scope=source.instrumentation_scope,
    )
    assert _decoded(encode_spans_to_bytes([span])) == _decoded(encode_spans([span]).SerializePartialToString())


def test_light_spans_are_read_field_by_field_as_the_sdks_own(monkeypatch):
    """Processors get our ended light spans themselves: the encoder reads them as it reads the SDK's."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_events=1, max_links=1))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    starter = SpanStarter(name="worker_app.tracing", version="0.1.0", schema_url=SCHEMA_URL, tracer_provider=provider)
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v")]))
    consumer = starter.start_span(
        "process jobs",
        context=set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "dramatiq", "dramatiq.message.retries": 2},
        links=[Link(remote, {"dramatiq.link.type": "previous_attempt"})],
    )
    assert isinstance(consumer, LightSpan)
    consumer.record_exception(ValueError("bad"))
    consumer.add_event("dropped: one event at most")
    consumer.add_link(SpanContext(7, 8, is_remote=False))
    consumer.set_known_attributes({"dramatiq.message.outcome": "failed"})
    consumer.set_status(Status(StatusCode.ERROR, "ValueError: bad"))
    consumer.end()
    starter.start_span("send jobs", context=None, kind=SpanKind.PRODUCER, attributes={}).end()
    spans = exporter.get_finished_spans()
    assert [type(span) for span in spans] == [LightSpan, LightSpan]
    expected = _decoded(encode_spans(spans).SerializePartialToString())
    assert expected.resource_spans[0].scope_spans[0].spans[0].dropped_events_count == 1

    def no_fallback(spans):
        raise AssertionError("light spans went to the SDK's encoder")

    monkeypatch.setattr(otlp_encoding, "encode_spans", no_fallback)
    assert _decoded(encode_spans_to_bytes(spans)) == expected


# -- spans encoded as they end -------------------------------------------------------------------


def _flat(request: ExportTraceServiceRequest) -> list[tuple[bytes, bytes, bytes]]:
    """Each span with its resource and scope: what a collector makes of a request, whatever its grouping."""
    return sorted(
        (resource_spans.resource.SerializeToString(), scope_spans.scope.SerializeToString(), span.SerializeToString())
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    )


def test_spans_encoded_one_by_one_make_the_same_request():
    spans = _spans()
    expected = _decoded(encode_spans(spans).SerializePartialToString())
    encoded = [otlp_encoding.encode_span(span) for span in spans]
    assert all(isinstance(item, otlp_encoding.EncodedSpan) for item in encoded)
    assert _decoded(encode_spans_to_bytes(encoded)) == expected
    # A batch may hold both: spans the processor could not encode are queued as they are.
    mixed = [item if index % 2 else span for index, (span, item) in enumerate(zip(spans, encoded, strict=True))]
    assert _decoded(encode_spans_to_bytes(mixed)) == expected


def test_a_span_only_the_sdk_can_encode_is_queued_as_it_is_and_its_batch_loses_nothing():
    spans = [*_spans(), _span_only_the_sdk_encodes()]
    assert otlp_encoding.encode_span(spans[-1]) is spans[-1]
    batch = [otlp_encoding.encode_span(span) for span in spans]
    # The SDK's encoder writes the odd span (and skips its bad attribute), ours the others: the same
    # spans under the same resources and scopes, some resources listed twice.
    got = _decoded(encode_spans_to_bytes(batch))
    assert _flat(got) == _flat(_decoded(encode_spans(spans).SerializePartialToString()))


@pytest.fixture
def collector():
    receiver = OtlpReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def fast_encoding(monkeypatch):
    monkeypatch.setattr(trace_exporter, "encode_spans", trace_exporter.encode_spans)  # restored afterwards
    assert otlp_encoding.use_fast_otlp_encoding()


def test_the_batch_processor_queues_encoded_spans_and_sends_what_the_sdk_would(collector, fast_encoding):
    processor = CountingBatchSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.endpoint}/v1/traces"))
    reference = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(reference))
    starter = SpanStarter(name="worker_app.tracing", version="0.1.0", schema_url=SCHEMA_URL, tracer_provider=provider)
    for index in range(3):
        span = starter.start_span(
            "process jobs", context=None, kind=SpanKind.CONSUMER, attributes={"messaging.message.id": str(index)}
        )
        with trace.use_span(span, end_on_exit=True):
            provider.get_tracer("user").start_span("child of the consumer span").end()  # an SDK span
    try:
        assert [type(item) for item in processor._span_queue] == [otlp_encoding.EncodedSpan] * 6
        assert processor.force_flush(5000)
    finally:
        provider.shutdown()
    spans = reference.get_finished_spans()
    assert {type(span) for span in spans} == {LightSpan, ReadableSpan}
    sent = [span for request in collector.requests for span in _flat(request)]
    assert sorted(sent) == _flat(_decoded(encode_spans(spans).SerializePartialToString()))


def test_only_the_sdks_otlp_http_exporter_with_the_fast_encoder_gets_encoded_spans(monkeypatch, fast_encoding):
    class Reading(OTLPSpanExporter):
        """A subclass may read the spans it is given."""

    assert otlp_encoding.span_encoder(OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")) is not None
    assert otlp_encoding.span_encoder(Reading(endpoint="http://127.0.0.1:9/v1/traces")) is None
    assert otlp_encoding.span_encoder(InMemorySpanExporter()) is None
    monkeypatch.setattr(trace_exporter, "encode_spans", encode_spans)  # an SDK that encodes its own way
    assert otlp_encoding.span_encoder(OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")) is None
    processor = CountingBatchSpanProcessor(InMemorySpanExporter())
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.get_tracer("t").start_span("kept as it is").end()
    assert [type(item) for item in processor._span_queue] == [ReadableSpan]
    provider.shutdown()


def test_a_span_the_encoder_fails_on_is_left_to_the_export_thread_not_raised_in_end():
    broken = ReadableSpan("built by hand without a context")
    assert otlp_encoding.encode_span(broken) is broken
