"""In-process fixtures: the real middleware stack on Dramatiq's StubBroker and a real Worker."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, values

from worker_app.observability.metrics import PrometheusMetrics
from worker_app.observability.tracing import OpenTelemetryMiddleware
from worker_app.runtime.broker import build_broker
from worker_app.runtime.settings import Settings


@dataclass
class StubStack:
    broker: StubBroker
    exporter: InMemorySpanExporter
    provider: TracerProvider
    registry: CollectorRegistry
    tracing: OpenTelemetryMiddleware
    metrics: PrometheusMetrics
    workers: list[dramatiq.Worker] = field(default_factory=list)

    def actor(self, **options: Any) -> Callable[[Callable[..., Any]], dramatiq.Actor[Any, Any]]:
        options.setdefault("min_backoff", 10)
        options.setdefault("max_backoff", 20)
        return dramatiq.actor(broker=self.broker, **options)

    def run(self, *queues: str) -> None:
        """Process everything enqueued so far (retries and delays included) with a real Worker."""
        if not self.workers:
            worker = dramatiq.Worker(self.broker, worker_timeout=50, worker_threads=2)
            worker.start()
            self.workers.append(worker)
        for queue in queues:
            self.broker.join(queue, timeout=20_000, fail_fast=False)
        self.workers[0].join()

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


@pytest.fixture
def stack() -> Iterator[StubStack]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    tracing = OpenTelemetryMiddleware(tracer_provider=provider, record_arguments=False)
    metrics = PrometheusMetrics(registry=registry)
    settings = Settings.from_env({"WORKER_BROKER": "stub"})
    broker = build_broker(settings, tracing=tracing, metrics=metrics)
    assert isinstance(broker, StubBroker)
    result = StubStack(broker, exporter, provider, registry, tracing, metrics)
    yield result
    for worker in result.workers:
        worker.stop()
    broker.close()


@contextlib.contextmanager
def _multiprocess_mode(directory: Path) -> Iterator[None]:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.get_value_class()
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        values.ValueClass = values.get_value_class()


@pytest.fixture
def multiprocess_mode() -> Callable[[Path], contextlib.AbstractContextManager[None]]:
    """`with multiprocess_mode(directory):` prometheus_client in multiprocess mode, writing to
    `directory` as a worker process does (metrics created inside keep writing there)."""
    return _multiprocess_mode
