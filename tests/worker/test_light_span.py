"""Our light producer/consumer spans export exactly what the SDK's own spans export.

`fastpath.light_span` stands in for `opentelemetry.sdk.trace.Tracer.start_span` and the SDK's span
on every message. Each scenario here runs through the real stack (broker, worker, middleware) twice,
once on the light path and once forced onto the SDK's path, with user code in the actors doing what
users' actors do with the consumer span; what the exporter receives (and what a processor sees at
`on_start`) must be the same, ids aside.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time

import dramatiq
import pytest
from dramatiq import Retry, Worker
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from worker_app.fastpath.light_span import LightSpan, SpanStarter
from worker_app.observability.metrics import PrometheusMetrics
from worker_app.observability.tracing import OpenTelemetryMiddleware
from worker_app.runtime.broker import build_broker
from worker_app.runtime.settings import Settings

_UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
_SAMPLED_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Ordinals:
    """Stable stand-ins for random ids (trace ids, span ids, message ids), by first appearance."""

    def __init__(self) -> None:
        self.seen: dict[object, int] = {}

    def __call__(self, value: object) -> int:
        return self.seen.setdefault(value, len(self.seen))


def _attributes(mapping, ordinals: _Ordinals) -> list[tuple]:
    return sorted(
        (key, ordinals(value) if key == "messaging.message.id" else value) for key, value in (mapping or {}).items()
    )


def _exported(spans, ordinals: _Ordinals) -> list[tuple]:
    """What an exporter receives of each span, ids replaced by ordinals and times by their order."""
    rows = []
    for span in sorted(spans, key=lambda span: (span.start_time, span.end_time)):
        context = span.get_span_context()
        rows.append(
            (
                span.name,
                span.kind,
                ordinals(context.trace_id),
                ordinals(context.span_id),
                int(context.trace_flags),
                dict(context.trace_state),
                None if span.parent is None else (ordinals(span.parent.span_id), span.parent.is_remote),
                _attributes(span.attributes, ordinals),
                span.dropped_attributes,
                [(event.name, _attributes(event.attributes, ordinals)) for event in span.events],
                span.dropped_events,
                [
                    (
                        ordinals(link.context.trace_id),
                        ordinals(link.context.span_id),
                        _attributes(link.attributes, ordinals),
                    )
                    for link in span.links
                ],
                span.dropped_links,
                (span.status.status_code, span.status.description),
                span.resource.attributes,
                span.instrumentation_scope,
                span.start_time <= span.end_time,
            )
        )
    return rows


class _StartRecorder(SpanProcessor):
    """A processor that reads the span at `on_start`, as some users' processors do."""

    def __init__(self) -> None:
        self.started: list[tuple] = []

    def on_start(self, span, parent_context=None) -> None:
        self.started.append((span.name, span.kind, dict(span.attributes), span.parent is not None, span.is_recording()))


def _run_scenarios(monkeypatch, *, light: bool, sampler=None, limits=None) -> tuple[list[tuple], list[tuple], set]:
    """Sends and deliveries through the real stack (StubBroker + Worker) with an SDK provider, the way
    users' actors use the consumer span. Returns the exported spans, what `on_start` saw, and the
    classes of the consumer spans the actors saw as current."""
    if not light:
        monkeypatch.setattr(SpanStarter, "_resolve", lambda self: None)  # the SDK's start_span, always
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, span_limits=limits)
    starts = _StartRecorder()
    provider.add_span_processor(starts)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = OpenTelemetryMiddleware(tracer_provider=provider, record_arguments=True)
    broker = build_broker(
        Settings.from_env({"WORKER_BROKER": "stub"}),
        tracing=tracing,
        metrics=PrometheusMetrics(registry=CollectorRegistry()),
    )
    user_tracer = provider.get_tracer("user-code")
    attempts: dict[str, int] = {}
    current_classes: set[str] = set()

    def attempt(name: str) -> int:
        attempts[name] = attempts.get(name, 0) + 1
        return attempts[name]

    def actor(**options):
        return dramatiq.actor(broker=broker, queue_name="jobs", min_backoff=1, max_backoff=2, **options)

    @actor()
    def child(text: str) -> None:
        current = trace.get_current_span()
        current_classes.add(type(current).__name__)
        current.set_attribute("user.text", text)
        current.set_attributes({"user.count": 3, "user.ratio": 0.5, "user.tags": ["a", "b"], "user.bad": {"x": 1}})
        current.add_event("user.event", {"step": 1})
        current.add_link(trace.SpanContext(7, 8, is_remote=True), {"user.link": "yes"})
        with user_tracer.start_as_current_span("user work", attributes={"user.flag": True}) as span:
            span.set_attribute("user.inner", "x")
            with user_tracer.start_as_current_span("user nested"):
                pass

    @actor(max_retries=2)
    def flaky() -> None:
        if attempt("flaky") == 1:
            raise ConnectionError("upstream timed out")

    @actor(max_retries=1)
    def broken() -> None:
        raise KeyError("missing")

    @actor()
    def handled() -> None:
        try:
            raise ValueError("bad input")
        except ValueError as error:
            trace.get_current_span().record_exception(error, {"user.handled": True})
            trace.get_current_span().set_status(trace.Status(trace.StatusCode.ERROR, "handled"))
            trace.get_current_span().set_status(trace.StatusCode.OK)

    @actor(max_retries=3)
    def retry_asked() -> None:
        if attempt("retry_asked") == 1:
            raise Retry(delay=1)

    @actor()
    def sends_another() -> None:
        child.send("from an actor")

    @actor()
    def renamed() -> None:
        trace.get_current_span().update_name("renamed by user")

    def traced_caller() -> None:
        with user_tracer.start_as_current_span("api request"):
            child.send_with_options(args=("traced caller",), delay=1)

    scenarios = [
        lambda: child.send("hello"),
        flaky.send,
        broken.send,
        handled.send,
        retry_asked.send,
        sends_another.send,
        renamed.send,
        traced_caller,
        # A producer that set odd options: a retry count that is not a number (a value the SDK cleans).
        lambda: child.send_with_options(args=("odd",), retries=[1, 2]),
        # Messages created in other traces: one its producer did not sample, one it did.
        lambda: child.send_with_options(args=("unsampled",), otel_context={"traceparent": _UNSAMPLED_PARENT}),
        lambda: child.send_with_options(args=("sampled",), otel_context={"traceparent": _SAMPLED_PARENT}),
    ]
    worker = Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        for send in scenarios:  # one at a time, so that spans come in the same order in every run
            send()
            broker.join("jobs", timeout=20_000, fail_fast=False)
            worker.join()
    finally:
        worker.stop()
        broker.close()
    ordinals = _Ordinals()
    started = [
        (name, kind, _attributes(attributes, ordinals), *rest) for name, kind, attributes, *rest in starts.started
    ]
    return _exported(exporter.get_finished_spans(), ordinals), started, current_classes


_SAMPLERS = {
    "default (parent-based, always on)": None,
    "always on, asked": ALWAYS_ON,
    "parent-based, roots dropped": ParentBased(ALWAYS_OFF),
}


@pytest.mark.parametrize("sampler", _SAMPLERS.values(), ids=_SAMPLERS.keys())
def test_light_spans_export_what_the_sdks_spans_export(monkeypatch, sampler):
    light, light_starts, light_classes = _run_scenarios(monkeypatch, light=True, sampler=sampler)
    reference, reference_starts, reference_classes = _run_scenarios(monkeypatch, light=False, sampler=sampler)
    # The comparison is between the two paths, not the SDK's path twice.
    assert "LightSpan" in light_classes
    assert "LightSpan" not in reference_classes
    # Roots dropped: only the delivery whose producer sampled it, and its user spans, are exported.
    assert len(light) == len(reference) >= (3 if sampler is _SAMPLERS["parent-based, roots dropped"] else 15)
    assert light == reference
    assert light_starts == reference_starts


@pytest.mark.parametrize(
    "limits",
    [
        SpanLimits(max_span_attributes=5, max_span_attribute_length=4, max_events=1, max_links=1),
        # Room for the consumer span's attributes at its start, not for the outcome at its end.
        SpanLimits(max_span_attributes=8),
    ],
    ids=["short values, few of everything", "attributes full at the end"],
)
def test_light_spans_apply_span_limits_as_the_sdk_does(monkeypatch, limits):
    light, light_starts, _ = _run_scenarios(monkeypatch, light=True, limits=limits)
    reference, reference_starts, _ = _run_scenarios(monkeypatch, light=False, limits=limits)
    assert any(row[8] for row in reference)  # attributes were dropped: the limits did apply
    assert light == reference
    assert light_starts == reference_starts


def _starter(provider) -> SpanStarter:
    return SpanStarter(
        name="t", version="1", schema_url="https://opentelemetry.io/schemas/1.26.0", tracer_provider=provider
    )


@pytest.mark.parametrize(("value", "light"), [(None, True), ("true", False), (" TRUE ", False), ("false", True)])
def test_the_sdks_own_spans_when_its_internal_span_metrics_are_on(value, light):
    """The SDK counts only the spans it starts itself in its internal span metrics."""
    env = {"WORKER_BROKER": "stub"}
    if value is not None:
        env["OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"] = value
    settings = Settings.from_env(env)
    assert settings.otel.sdk_span_metrics is not light
    tracing = OpenTelemetryMiddleware(tracer_provider=TracerProvider(), light_spans=True)
    broker = build_broker(settings, metrics=PrometheusMetrics(registry=CollectorRegistry()))
    built = next(middleware for middleware in broker.middleware if isinstance(middleware, OpenTelemetryMiddleware))
    # What build_broker decided, applied to a provider of the test's own (not the process's global one).
    tracing._spans._light = built._spans._light
    span = tracing._spans.start_span("s", context=None, kind=SpanKind.PRODUCER, attributes={})
    assert isinstance(span, LightSpan) is light
    assert span.is_recording()


def test_a_provider_that_is_not_the_sdks_gets_its_own_spans():
    span = _starter(trace.NoOpTracerProvider()).start_span("s", context=None, kind=SpanKind.PRODUCER, attributes={})
    assert isinstance(span, trace.NonRecordingSpan)


#: Run in a fresh interpreter: the API sets the global provider once per process.
_GLOBAL_SET_LATER = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from worker_app.fastpath.light_span import SpanStarter
import json

starter = SpanStarter(name="worker_app", version="1", schema_url="")
def start():
    return starter.start_span("s", context=None, kind=SpanKind.PRODUCER, attributes={})
before = [type(start()).__name__ for _ in range(2)]  # the global is still the API's proxy
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
after = [start() for _ in range(2)]
for span in after:
    span.end()
trace.set_tracer_provider(TracerProvider())  # refused by the API: the first one stays
last = start()
last.end()
print(json.dumps({
    "before": before,
    "after": [type(span).__name__ for span in after],
    "last": type(last).__name__,
    "exported": len(exporter.get_finished_spans()),
}))
"""


def test_a_global_provider_set_after_the_starter_is_used_from_then_on():
    result = subprocess.run(
        [sys.executable, "-c", _GLOBAL_SET_LATER], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {
        "before": ["NonRecordingSpan", "NonRecordingSpan"],  # no SDK yet: the API's no-op spans
        "after": ["LightSpan", "LightSpan"],
        "last": "LightSpan",  # still the first provider's pipeline: the API kept it
        "exported": 3,
    }


def test_an_ended_light_span_warns_and_changes_nothing(caplog):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = _starter(provider).start_span("s", context=None, kind=SpanKind.CONSUMER, attributes={"a": 1})
    assert isinstance(span, LightSpan)
    span.end()
    with caplog.at_level(logging.WARNING):
        span.end()
        span.set_attribute("late", True)
        span.set_known_attributes({"late.known": 1})
        span.add_event("late")
        span.record_exception(ValueError("late"))
        span.add_link(trace.SpanContext(7, 8, is_remote=True))
        span.set_status(trace.StatusCode.ERROR, "late")
        span.update_name("late")
    # Processors get the ended span itself (no copy): nothing done after the end reaches them.
    (exported,) = exporter.get_finished_spans()
    assert dict(exported.attributes) == {"a": 1}
    assert (exported.name, exported.events, exported.links) == ("s", (), ())
    assert exported.status.status_code is trace.StatusCode.UNSET
    assert (exported.dropped_attributes, exported.dropped_events, exported.dropped_links) == (0, 0, 0)
    assert json.loads(exported.to_json())["name"] == "s"
    messages = [record.getMessage() for record in caplog.records]
    assert "Calling end() on an ended span." in messages
    assert "Setting attribute on ended span." in messages


class _SnapshotAtEnd(SpanProcessor):
    """Records the attributes a span has when the processors get it."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def on_end(self, span) -> None:
        self.seen.append(dict(span.attributes))


def test_attributes_set_while_another_thread_ends_the_span_land_before_the_end_or_not_at_all():
    snapshots = _SnapshotAtEnd()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=100_000))
    provider.add_span_processor(snapshots)
    span = _starter(provider).start_span("s", context=None, kind=SpanKind.CONSUMER, attributes={})
    assert isinstance(span, LightSpan)
    started = threading.Barrier(5)

    def set_many(thread: int) -> None:
        started.wait(timeout=10)
        for index in range(2_000):
            span.set_attribute(f"t{thread}.{index}", index)
            span.set_known_attributes({f"k{thread}.{index}": index})

    threads = [threading.Thread(target=set_many, args=(thread,)) for thread in range(4)]
    logging.disable(logging.WARNING)  # the late setters' warnings, thousands of them
    try:
        for thread in threads:
            thread.start()
        started.wait(timeout=10)
        deadline = time.monotonic() + 10
        while len(span.attributes) < 500 and time.monotonic() < deadline:
            time.sleep(0.001)
        span.end()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        logging.disable(logging.NOTSET)
    (at_end,) = snapshots.seen
    assert 500 <= len(at_end) < 16_000
    assert dict(span.attributes) == at_end  # nothing landed after the processors got it
    assert not span.is_recording()
