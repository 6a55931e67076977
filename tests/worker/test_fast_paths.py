"""The worker's hot-path shortcuts behave exactly like the library code they stand in for.

Each one exists because `make bench` showed its cost per message (docs/benchmarks.md); each test
here compares it with the reference behaviour, so a shortcut can never change what users see.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import dramatiq
import pytest
from dramatiq import Middleware
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import SkipMessage
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from worker_app.observability.propagation import extract as _extract
from worker_app.observability.propagation import extract_parent as _extract_parent
from worker_app.observability.propagation import inject as _inject
from worker_app.observability.telemetry import SPANS_DROPPED, CountingBatchSpanProcessor
from worker_app.runtime.broker import FastStubBroker as _StubBroker

# -- broker signal dispatch ----------------------------------------------------------------------


class _Recorder(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def before_process_message(self, broker, message):
        self.calls.append(f"{self.name}.before")

    def after_process_message(self, broker, message, *, result=None, exception=None):
        self.calls.append(f"{self.name}.after:{result}")


class _Silent(Middleware):
    """Implements no hook: the base class's no-ops."""


class _FailsAfter(Middleware):
    def after_process_message(self, broker, message, *, result=None, exception=None):
        raise RuntimeError("broken middleware")


class _Skips(Middleware):
    def before_process_message(self, broker, message):
        raise SkipMessage


def _emit_both_ways(make_middleware):
    """The calls each broker class makes for the same signals."""
    seen = {}
    for broker_class in (StubBroker, _StubBroker):
        calls: list[str] = []
        broker = broker_class(middleware=make_middleware(calls))
        late = _Recorder("late", calls)
        broker.add_middleware(late)  # added after the dispatch table may have been built
        broker.emit_before("process_message", "message")
        broker.emit_after("process_message", "message", result=42)
        instance = _Silent()
        instance.before_process_message = lambda broker, message, calls=calls: calls.append("instance.before")
        broker.add_middleware(instance)
        broker.emit_before("process_message", "message")
        seen[broker_class] = calls
    return seen


def test_hooks_run_in_dramatiqs_order_including_late_and_instance_hooks():
    seen = _emit_both_ways(lambda calls: [_Recorder("a", calls), _Silent(), _Recorder("b", calls)])
    assert seen[_StubBroker] == seen[StubBroker]
    assert seen[_StubBroker] == [
        "a.before", "b.before", "late.before",
        "late.after:42", "b.after:42", "a.after:42",
        "a.before", "b.before", "late.before", "instance.before",
    ]  # fmt: skip


def test_a_failing_after_hook_is_logged_and_the_others_still_run(caplog):
    with caplog.at_level(logging.CRITICAL):
        seen = _emit_both_ways(lambda calls: [_Recorder("a", calls), _FailsAfter()])
    assert seen[_StubBroker] == seen[StubBroker]
    assert "late.after:42" in seen[_StubBroker]
    assert "a.after:42" in seen[_StubBroker]
    assert sum("Unexpected failure in after_process_message" in r.message for r in caplog.records) == 2


def test_middleware_errors_from_before_hooks_propagate():
    broker = _StubBroker(middleware=[_Skips()])
    with pytest.raises(SkipMessage):
        broker.emit_before("process_message", "message")


# -- trace context propagation -------------------------------------------------------------------


def _reference(carrier):
    return propagate.extract(carrier)


def _summary(context: Context):
    span_context = trace.get_current_span(context).get_span_context()
    return (
        span_context.trace_id,
        span_context.span_id,
        span_context.trace_flags,
        span_context.is_remote,
        dict(span_context.trace_state),
        dict(baggage.get_all(context)),
    )


@pytest.mark.parametrize(
    "carrier",
    [
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"},
        {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"},
        {"traceparent": "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"},
        {"traceparent": "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"},
        {"traceparent": "garbage"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "k=v"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "baggage": "tenant=acme"},
        {},
    ],
)
def test_extract_equals_the_propagators(carrier):
    assert _summary(_extract(carrier)) == _summary(_reference(carrier))
    # The parent the consumer span is started with is the one in that context (None: no valid one).
    context, parent = _extract_parent(carrier)
    expected = trace.get_current_span(_reference(carrier)).get_span_context()
    assert parent == (expected if expected.is_valid else None)
    assert _summary(context) == _summary(_reference(carrier))


@pytest.mark.parametrize("carrier", [{"traceparent": 7}, {"traceparent": ["x"]}, ["not", "a", "map"], "text"])
def test_a_malformed_carrier_starts_a_new_trace_instead_of_failing(carrier):
    assert not trace.get_current_span(_extract(carrier)).get_span_context().is_valid
    assert _extract_parent(carrier)[1] is None


def _injected_by_propagators(span) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


@pytest.mark.parametrize("sampled", [True, False])
def test_inject_equals_the_propagators(sampled):
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else 0)
    span = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=flags))
    assert _inject(span) == _injected_by_propagators(span)


def test_inject_keeps_trace_state_and_baggage():
    span = NonRecordingSpan(SpanContext(1, 2, is_remote=False, trace_state=TraceState([("vendor", "x")])))
    assert _inject(span) == _injected_by_propagators(span)
    assert "tracestate" in _inject(span)
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        plain = NonRecordingSpan(SpanContext(1, 2, is_remote=False))
        assert _inject(plain) == _injected_by_propagators(plain)
        assert "baggage" in _inject(plain)
    finally:
        otel_context.detach(token)


# -- dropped spans ---------------------------------------------------------------------------------


def test_a_full_span_queue_counts_every_drop_and_warns_once(caplog):
    processor = CountingBatchSpanProcessor(InMemorySpanExporter())
    processor._span_queue_size = processor._outage_queue_size = 0  # as if the queue had filled up
    provider = TracerProvider()
    provider.add_span_processor(processor)
    dropped = SPANS_DROPPED.labels("queue_full")
    before = dropped._value.get()
    with caplog.at_level(logging.WARNING, logger="worker_app.telemetry"):
        for index in range(200):
            provider.get_tracer("t").start_span(f"span {index}").end()
    provider.shutdown()
    assert dropped._value.get() - before == 200
    warnings = [record for record in caplog.records if "Span queue full" in record.getMessage()]
    assert len(warnings) == 1


# -- SDK configuration -------------------------------------------------------------------------------


def test_the_distros_configurator_is_still_the_sdks_own():
    """telemetry.py configures through the SDK's configurator, not the distro's subclass, to keep
    opentelemetry-instrumentation out of every worker process (about 2 MB each). That is only the
    same thing while the distro's class adds nothing: this fails on an upgrade where it starts to."""
    from opentelemetry.distro import OpenTelemetryConfigurator
    from opentelemetry.sdk._configuration import _OTelSDKConfigurator

    assert OpenTelemetryConfigurator.__bases__ == (_OTelSDKConfigurator,)
    assert not [name for name in vars(OpenTelemetryConfigurator) if not name.startswith("__") and name != "_abc_impl"]


class _CollectorGoingDown(SpanExporter):
    """Refuses the first export, then leaves every later one waiting (the exporter's retry back-off)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def export(self, spans):
        self.calls += 1
        if self.calls == 1:
            return SpanExportResult.FAILURE
        self.release.wait(10)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.release.set()


def _small_queue_provider(monkeypatch, exporter: SpanExporter) -> tuple[CountingBatchSpanProcessor, TracerProvider]:
    """Batches of 64 spans in a queue of 1024, exported when a batch is full (not on a timer)."""
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "1024")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    processor = CountingBatchSpanProcessor(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return processor, provider


def test_while_the_collector_is_down_the_queue_holds_one_batch_and_the_rest_is_counted(monkeypatch):
    exporter = _CollectorGoingDown()
    processor, provider = _small_queue_provider(monkeypatch, exporter)
    tracer = provider.get_tracer("t")
    dropped = SPANS_DROPPED.labels("queue_full")
    tracer.start_span("first").end()
    processor.force_flush(5000)  # refused: the collector is now known to be down
    assert exporter.calls == 1
    before = dropped._value.get()
    for index in range(1000):
        tracer.start_span(f"span {index}").end()
    queued = len(processor._span_queue)
    assert queued <= 64  # one batch kept for when the collector is back, not the 1024 the queue allows
    # Every span is either queued, in the batch the exporter is holding, or counted as dropped.
    assert dropped._value.get() - before >= 1000 - 64 - 64
    exporter.release.set()
    provider.shutdown()


def test_while_the_collector_is_down_a_default_queue_keeps_64_spans_not_a_whole_batch(monkeypatch):
    """With the SDK's default batch (512 spans), an outage keeps 64 spans: keeping a whole batch cost
    every worker process up to 1.1 MB of RSS for the outage (docs/benchmarks.md)."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # exports only on a full batch or a flush
    exporter = _CollectorGoingDown()
    processor = CountingBatchSpanProcessor(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    dropped = SPANS_DROPPED.labels("queue_full")
    tracer.start_span("first").end()
    processor.force_flush(5000)  # refused: the collector is now known to be down
    before = dropped._value.get()
    for index in range(1000):
        tracer.start_span(f"span {index}").end()
    assert len(processor._span_queue) == 64
    assert dropped._value.get() - before == 1000 - 64
    exporter.release.set()
    provider.shutdown()


class _CollectorNotAnswering(SpanExporter):
    """Leaves every export waiting (a collector that accepted the connection and never answers)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans):
        self.release.wait(10)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.release.set()


def test_an_export_unanswered_for_half_a_second_is_an_outage(monkeypatch):
    exporter = _CollectorNotAnswering()
    processor, provider = _small_queue_provider(monkeypatch, exporter)
    tracer = provider.get_tracer("t")
    for index in range(64):  # one full batch: the export that will never be answered starts
        tracer.start_span(f"span {index}").end()
    deadline = time.monotonic() + 5
    while processor._exporter.export_started is None and time.monotonic() < deadline:
        time.sleep(0.01)
    for index in range(300):  # within the first half second: kept, as for a collector that is slow
        tracer.start_span(f"early {index}").end()
    assert len(processor._span_queue) == 300
    time.sleep(0.6)
    for index in range(300):
        tracer.start_span(f"late {index}").end()
    assert len(processor._span_queue) == 300  # nothing more kept once the wait counts as an outage
    exporter.release.set()
    provider.shutdown()


def test_a_live_collector_keeps_the_whole_queue(monkeypatch):
    exporter = InMemorySpanExporter()
    _, provider = _small_queue_provider(monkeypatch, exporter)
    dropped = SPANS_DROPPED.labels("queue_full")
    before = dropped._value.get()
    for index in range(500):
        provider.get_tracer("t").start_span(f"span {index}").end()
    provider.shutdown()
    assert dropped._value.get() == before
    assert len(exporter.get_finished_spans()) == 500


# -- actor argument check ----------------------------------------------------------------------------


def _plain(url: str, depth: int = 1, *, unused=None) -> tuple:
    return (url, depth)


def _positional(url: str, depth: int = 1, flag: bool = False) -> tuple:
    return (url, depth, flag)


def _anything(a, b=None) -> tuple:
    return (a, b)


def _variadic(first: str, *rest: int, **options: str) -> tuple:
    return (first, rest, options)


def _outcome(call, args, kwargs):
    from worker_app.errors import InvalidJobArguments

    try:
        return ("ok", call(*args, **kwargs))
    except InvalidJobArguments as error:
        return ("invalid", str(error))


@pytest.mark.parametrize("fn", [_plain, _positional, _anything, _variadic])
@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("https://blog.example",), {}),
        (("https://blog.example", 2), {}),
        (("https://blog.example", 2, True), {}),
        (("https://blog.example", 2, True, 4), {}),
        (("https://blog.example", True), {}),
        ((7,), {}),
        ((None, None), {}),
        (("https://blog.example",), {"depth": 3}),
        ((), {"url": "https://blog.example", "colour": "red"}),
        (("https://blog.example", 2.5), {}),
    ],
)
def test_argument_check_binds_like_signature_bind(fn, args, kwargs):
    from worker_app.runtime.job_arguments import checked_call

    fast = _outcome(checked_call("job", fn), args, kwargs)
    reference = _outcome(checked_call("job", fn, bind_in_order=False), args, kwargs)
    assert fast == reference


# -- metrics writes in multiprocess mode --------------------------------------------------------


def _files(directory: Path, pid: int | None = None) -> dict[tuple[str, str], str]:
    """Every value in the directory's files: (file kind, key) -> repr (NaN compares by its repr)."""
    from prometheus_client.mmap_dict import MmapedDict

    found = {}
    for path in sorted(directory.glob(f"*_{pid or ''}*.db")):
        kind = path.name.rsplit("_", 1)[0]
        for key, value, timestamp, _position in MmapedDict.read_all_values_from_file(str(path)):
            found[(kind, key)] = f"{value!r}@{timestamp!r}"
    return found


def _series():
    from prometheus_client import Counter, Gauge, Histogram

    from worker_app.observability.metrics import PROCESSING_TIME_BUCKETS

    return (
        Counter("jobs", "Jobs.", ["queue", "outcome"], registry=None),
        Gauge("running", "Running.", ["queue"], registry=None, multiprocess_mode="livesum"),
        Histogram("took", "Took.", ["queue"], buckets=PROCESSING_TIME_BUCKETS, registry=None),
    )


#: (series, amount): 0 counter, 1 gauge (a negative amount is dec), 2 histogram; bucket bounds, 0,
#: infinity and NaN included.
_WRITES = [(0, 1.0), (1, 1.0), (2, 0.004), (1, -1.0), (0, 2.5), (2, 0.005), (2, 2.5), (2, 0.0), (1, 3.0)]
_WRITES += [(2, float("inf")), (2, float("nan")), (2, 4000.0), (0, 0.0), (1, -0.5), (2, 1e-9), (2, 7.25)]


def _write_reference(children) -> None:
    counter, gauge, histogram = children
    for series, amount in _WRITES:
        if series == 0:
            counter.inc(amount)
        elif series == 1:
            gauge.inc(amount) if amount >= 0 else gauge.dec(-amount)
        else:
            histogram.observe(amount)


def _write_fast(children) -> None:
    from worker_app.fastpath.multiprocess_values import WRITE_LOCK, FastHistogram, FastValue

    counter, gauge, histogram = FastValue(children[0]._value), FastValue(children[1]._value), FastHistogram(children[2])
    for series, amount in _WRITES:
        with WRITE_LOCK:
            if series == 2:
                histogram.observe(amount)
            else:
                (counter if series == 0 else gauge).add(amount)


def _grow(series, count: int) -> None:
    """Enough new series to make each file grow (prometheus_client then maps it again)."""
    counter, gauge, histogram = series
    for index in range(count):
        label = f"grown-{index:04d}-" + "x" * 200
        counter.labels(label, "success")
        gauge.labels(label)
        histogram.labels(label)


def test_multiprocess_writes_put_the_same_values_in_the_same_files(tmp_path, multiprocess_mode):
    results = []
    for name, write in (("reference", _write_reference), ("fast", _write_fast)):
        directory = tmp_path / name
        directory.mkdir()
        with multiprocess_mode(directory):
            series = _series()
            children = (series[0].labels("jobs", "success"), series[1].labels("jobs"), series[2].labels("jobs"))
            write(children)
            _grow(series, 400)  # the files are mapped again: the next writes must land in the new maps
            write(children)
            results.append(_files(directory))
    reference, fast = results
    assert len(reference) > 1200
    assert fast == reference
    assert reference[("counter", next(key for kind, key in reference if kind == "counter" and '"jobs"}' in key))]


def test_after_a_fork_multiprocess_writes_go_to_the_childs_files(tmp_path, multiprocess_mode):
    from worker_app.fastpath.multiprocess_values import WRITE_LOCK, FastValue

    with multiprocess_mode(tmp_path):
        counter, _gauge, _histogram = _series()
        fast = FastValue(counter.labels("jobs", "success")._value)
        with WRITE_LOCK:
            fast.add(1.0)  # resolved in this process
        parent = _files(tmp_path, os.getpid())
        pid = os.fork()
        if pid == 0:  # the child: one more write, then leave without pytest's teardown
            try:
                with WRITE_LOCK:
                    fast.add(5.0)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert _files(tmp_path, os.getpid()) == parent  # the parent's file did not change
        (child_value,) = [value for (kind, key), value in _files(tmp_path, pid).items() if kind == "counter"]
        # prometheus_client's own rule: a forked child starts its own file at 0.
        assert child_value == "5.0@0.0"


def test_the_metrics_middleware_writes_the_same_series_either_way(tmp_path, monkeypatch, multiprocess_mode):
    from prometheus_client import CollectorRegistry

    from worker_app.observability import metrics as metrics_module
    from worker_app.observability.metrics import PrometheusMetrics
    from worker_app.runtime.broker import build_broker
    from worker_app.runtime.settings import Settings

    results = []
    for name in ("reference", "fast"):
        if name == "reference":
            monkeypatch.setattr(metrics_module, "multiprocess", lambda child: False)
        else:
            monkeypatch.undo()
        directory = tmp_path / name
        directory.mkdir()
        with multiprocess_mode(directory):
            metrics = PrometheusMetrics(registry=CollectorRegistry(), exemplar_dir=None)
            broker = build_broker(Settings.from_env({"WORKER_BROKER": "stub"}), metrics=metrics)

            @dramatiq.actor(broker=broker, queue_name="jobs", max_retries=0)
            def job(fail: bool) -> None:
                if fail:
                    raise ValueError("no")

            for fail in (False, True, False):
                job.send(fail)
            worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
            worker.start()
            try:
                broker.join("jobs", timeout=10_000, fail_fast=False)
                worker.join()
            finally:
                worker.stop()
            assert (metrics._by_actor[("jobs", "job")].fast is not None) is (name == "fast")
            # Timing differs between runs: compare everything but the histogram's sum and buckets.
            values = _files(directory)
            results.append(
                {key: value for key, value in values.items() if '"took' not in key and "_time" not in key[1]}
            )
            histogram = [value for key, value in values.items() if "processing_time_bucket" in key[1]]
            assert sum(float(value.split("@")[0]) for value in histogram) == 3.0
    reference, fast = results
    assert fast == reference
    processed = {key: value for key, value in fast.items() if "messages_processed_total" in key[1]}
    assert sorted(value for value in processed.values()) == ["0.0@0.0", "0.0@0.0", "1.0@0.0", "2.0@0.0"]
