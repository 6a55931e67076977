"""Prometheus metrics for Dramatiq deliveries, correct across processes and retries.

Unlike Dramatiq's built-in Prometheus middleware, a retry is counted once (when it is enqueued),
the in-progress gauge only goes down for a delivery it went up for (so it can neither go negative
for skipped messages nor stick), and there is no in-process delayed-messages gauge at all: queue
depth, delayed messages included, is read from Redis at scrape time (`queue_depth.py`).

In the worker, prometheus_client runs in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set by
`python -m worker_app`) and the metrics server aggregates every process's files. The registry
given here only matters in a single process (tests, or an API process that never consumes).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dramatiq import Middleware
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .exemplars import ExemplarRecorder
from .outcomes import OUTCOMES, SKIPPED, classify
from .queues import canonical_queue

if TYPE_CHECKING:
    from dramatiq import Broker, Message, Worker
    from dramatiq.broker import MessageProxy

#: Seconds. Jobs range from a ping (milliseconds) to a full site clone (many minutes).
PROCESSING_TIME_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
)  # fmt: skip
#: Distinct `error_type` label values per process before new ones are reported as "other".
MAX_ERROR_TYPES = 50
OTHER_ERROR_TYPE = "other"


@dataclass(slots=True)
class _ActorMetrics:
    """The label children of one (queue, actor): resolved once, since `.labels()` costs a lock."""

    queue: str
    actor: str
    in_progress: Any
    processing_time: Any
    processed: dict[str, Any]
    retries: Any
    dead_lettered: Any
    errors: dict[str, Any]


@dataclass(slots=True)
class _Delivery:
    message_id: str
    metrics: _ActorMetrics
    started: float
    retried: bool = False


class PrometheusMetrics(Middleware):
    """Counts and times deliveries. Metric names are part of the dashboards' contract."""

    def __init__(self, registry: CollectorRegistry | None = None, exemplar_dir: str | None = None) -> None:
        """`exemplar_dir`: where this process persists exemplars (default: `PROMETHEUS_MULTIPROC_DIR`
        when set); without one, exemplars go on the in-process histogram itself."""
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        directory = exemplar_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self._exemplars = ExemplarRecorder(directory, PROCESSING_TIME_BUCKETS) if directory else None
        labels = ["queue", "actor"]
        self.processed = Counter(
            "dramatiq_messages_processed",
            "Deliveries that finished, by outcome: success, retried (enqueued for another attempt), "
            "failed (dead-lettered or not retried), skipped (by a middleware, before the actor ran).",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "dramatiq_errors",
            "Deliveries whose actor raised an error (Retry and declared non-error exceptions excluded), "
            "by exception class name.",
            [*labels, "error_type"],
            registry=self.registry,
        )
        self.retries = Counter(
            "dramatiq_message_retries",
            "Messages enqueued again for another attempt, counted once per retry.",
            labels,
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "dramatiq_messages_dead_lettered",
            "Messages moved to the dead-letter queue.",
            labels,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "dramatiq_messages_in_progress",
            "Deliveries being processed right now.",
            labels,
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.processing_time = Histogram(
            "dramatiq_message_processing_time",
            "Time the actor took per delivery, in seconds (skipped deliveries excluded).",
            labels,
            registry=self.registry,
            buckets=PROCESSING_TIME_BUCKETS,
        )
        self._by_actor: dict[tuple[str, str], _ActorMetrics] = {}
        self._error_types: set[str] = set()
        self._lock = threading.Lock()
        self._local = threading.local()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        metrics = self._metrics_for(canonical_queue(message.queue_name), message.actor_name)
        metrics.in_progress.inc()
        self._local.delivery = _Delivery(message.message_id, metrics, time.perf_counter())

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        delivery: _Delivery | None = getattr(self._local, "delivery", None)
        if delivery is not None and delivery.message_id == message.message_id and not delivery.retried:
            # The message being processed by this thread is enqueued again: that is a retry.
            delivery.retried = True
            delivery.metrics.retries.inc()

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: object | None = None,
        exception: BaseException | None = None,
    ) -> None:
        delivery = self._take_delivery(message)
        if delivery is None:
            return
        metrics = delivery.metrics
        metrics.in_progress.dec()
        self._observe(metrics, time.perf_counter() - delivery.started)
        outcome = classify(broker, message, exception, retried=delivery.retried)
        metrics.processed[outcome.outcome].inc()
        if outcome.error and exception is not None:
            self._error_counter(metrics, type(exception).__name__).inc()
        if message.failed:
            metrics.dead_lettered.inc()

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        delivery = self._take_delivery(message)
        if delivery is not None:
            delivery.metrics.in_progress.dec()
            metrics = delivery.metrics
        else:
            metrics = self._metrics_for(canonical_queue(message.queue_name), message.actor_name)
        metrics.processed[SKIPPED].inc()
        if message.failed:
            metrics.dead_lettered.inc()

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if self._exemplars is not None:
            self._exemplars.flush()

    def _observe(self, metrics: _ActorMetrics, seconds: float) -> None:
        # The consumer span is still current: tracing's after-hook runs after this one.
        span_context = trace.get_current_span().get_span_context()
        if not (span_context.is_valid and span_context.trace_flags.sampled):
            metrics.processing_time.observe(seconds)
        elif self._exemplars is not None:
            metrics.processing_time.observe(seconds)
            self._exemplars.record(metrics.queue, metrics.actor, seconds, span_context.trace_id, span_context.span_id)
        else:
            exemplar = {
                "trace_id": format(span_context.trace_id, "032x"),
                "span_id": format(span_context.span_id, "016x"),
            }
            metrics.processing_time.observe(seconds, exemplar)

    def _take_delivery(self, message: MessageProxy) -> _Delivery | None:
        delivery: _Delivery | None = getattr(self._local, "delivery", None)
        self._local.delivery = None
        if delivery is None or delivery.message_id != message.message_id:
            if delivery is not None:
                delivery.metrics.in_progress.dec()
            return None
        return delivery

    def _metrics_for(self, queue: str, actor: str) -> _ActorMetrics:
        key = (queue, actor)
        metrics = self._by_actor.get(key)
        if metrics is None:
            with self._lock:
                metrics = self._by_actor.get(key)
                if metrics is None:
                    metrics = self._by_actor[key] = _ActorMetrics(
                        queue=queue,
                        actor=actor,
                        in_progress=self.in_progress.labels(queue, actor),
                        processing_time=self.processing_time.labels(queue, actor),
                        processed={outcome: self.processed.labels(queue, actor, outcome) for outcome in OUTCOMES},
                        retries=self.retries.labels(queue, actor),
                        dead_lettered=self.dead_lettered.labels(queue, actor),
                        errors={},
                    )
        return metrics

    def _error_counter(self, metrics: _ActorMetrics, error_type: str) -> Any:
        counter = metrics.errors.get(error_type)
        if counter is not None:
            return counter
        with self._lock:
            label = error_type
            if error_type not in self._error_types and len(self._error_types) >= MAX_ERROR_TYPES:
                label = OTHER_ERROR_TYPE  # keep the label's cardinality bounded
            else:
                self._error_types.add(error_type)
            counter = metrics.errors[error_type] = self.errors.labels(metrics.queue, metrics.actor, label)
        return counter
