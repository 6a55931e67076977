"""A collector outage does not grow a worker's memory: what failed exports leave behind is freed.

Every HTTP attempt the collector refuses leaves a reference cycle (requests' and urllib3's exception
chains and their frames) that holds the request and its encoded batch; left to Python's automatic
collector, they piled up for the whole outage (+4 MB per 100,000 messages, docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from dramatiq.brokers.stub import StubBroker
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from worker_app.observability import telemetry
from worker_app.runtime.boot_heap import FreezeBootHeap
from worker_app.runtime.broker import build_broker
from worker_app.runtime.settings import Settings


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: every connection is refused at once."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}/v1/traces"


def _spans(count: int):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for index in range(count):
        provider.get_tracer("t").start_span(f"span {index}").end()
    return exporter.get_finished_spans()


def _http_garbage() -> list[str]:
    """Names of the frames of requests/urllib3 that only the cyclic collector could free now."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [
            f"{item.f_code.co_filename}:{item.f_code.co_name}"
            for item in gc.garbage
            if type(item).__name__ == "frame"
            and ("urllib3" in item.f_code.co_filename or "requests" in item.f_code.co_filename)
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_a_refused_export_leaves_no_cycles_holding_the_batch(refused_url, monkeypatch):
    monkeypatch.setattr(telemetry, "_exporters", [])
    exporter = telemetry._CountingExporter(OTLPSpanExporter(endpoint=refused_url, timeout=0.5))
    spans = _spans(64)
    gc.collect()
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert exporter.last_export_failed
    assert _http_garbage() == []
    # The same export through the bare exporter does leave them (so the check above can fail).
    assert OTLPSpanExporter(endpoint=refused_url, timeout=0.5).export(spans) is SpanExportResult.FAILURE
    assert _http_garbage() != []


def test_collections_after_failed_exports_are_spaced(refused_url, monkeypatch):
    collections: list[int] = []
    monkeypatch.setattr(telemetry, "_exporters", [])
    monkeypatch.setattr(telemetry, "gc", SimpleNamespace(collect=lambda: collections.append(1) or 0))
    exporter = telemetry._CountingExporter(OTLPSpanExporter(endpoint=refused_url, timeout=0.2))
    spans = _spans(1)
    for _ in range(3):  # a collector refusing every export, back to back
        assert exporter.export(spans) is SpanExportResult.FAILURE
    assert len(collections) == 1  # at most one per _COLLECT_INTERVAL


def test_a_slow_collection_spaces_the_next_ones_by_a_hundred_times_its_duration(monkeypatch):
    # A process whose heap is not frozen (the API) may take 250 ms to walk it: at most 1% of its time.
    clock = [1000.0]
    collections: list[float] = []

    def collect() -> int:
        collections.append(clock[0])
        clock[0] += 0.25
        return 0

    monkeypatch.setattr(telemetry, "_exporters", [])
    monkeypatch.setattr(telemetry, "gc", SimpleNamespace(collect=collect))
    monkeypatch.setattr(telemetry, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    exporter = telemetry._CountingExporter(InMemorySpanExporter())
    for now in (1000.0, 1010.0, 1024.9, 1025.0, 1040.0, 1050.0):
        clock[0] = now
        exporter._collect_garbage()
    assert collections == [1000.0, 1025.0, 1050.0]


class TestFreezeBootHeap:
    @pytest.fixture(autouse=True)
    def _unfreeze(self) -> Iterator[None]:
        yield
        gc.unfreeze()  # give the test process its heap back

    def test_the_heap_is_frozen_before_the_first_worker_starts_and_only_then(self):
        middleware = FreezeBootHeap()
        gc.unfreeze()
        middleware.before_worker_boot(StubBroker(), worker=None)  # type: ignore[arg-type]
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the modules, classes and functions this process imported
        later = [object() for _ in range(100)]  # tracked objects made after boot
        middleware.before_worker_boot(StubBroker(), worker=None)  # type: ignore[arg-type]
        assert gc.get_freeze_count() == frozen
        assert later

    def test_the_worker_brokers_freeze_after_every_other_middlewares_boot_hook(self):
        broker = build_broker(Settings.from_env({"WORKER_BROKER": "stub"}))
        booting = [
            type(middleware) for middleware in broker.middleware if "before_worker_boot" in vars(type(middleware))
        ]
        assert booting[-1] is FreezeBootHeap
