"""Prometheus metrics for Dramatiq deliveries, correct across processes and retries.

Unlike Dramatiq's built-in Prometheus middleware, a retry is counted once (when it is enqueued),
the in-progress gauge only goes down for a delivery it went up for (so it can neither go negative
for skipped messages nor stick), and there is no in-process delayed-messages gauge at all: queue
depth, delayed messages included, is read from Redis at scrape time (`queue_depth.py`).

In the worker, prometheus_client runs in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set by
`python -m worker_app`) and the metrics server aggregates every process's files. The registry
given here only matters in a single process (tests, or an API process that never consumes).

Outcomes, retries and the exemplar's span context come from the delivery record
(`delivery.DeliveryTracker`), never from hook order or the current span.

Every series whose labels are known in advance exists from the start, at 0 (Prometheus client
guidance for labelled metrics): when a worker process boots, each actor of its broker gets its
processed series (every outcome), processing-time histogram, retries, dead-lettered and in-progress
series, and an errors series for each exception class the actor declares in `throws` (the failures
it is known to raise; other classes appear when first raised). So `rate()` panels read 0 and
absence alerts can tell "no jobs yet" from "broken" before the first job. Processes that only
enqueue never boot, so they add no series.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from dramatiq import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..config.queues import canonical_queue
from ..fastpath.multiprocess_values import WRITE_LOCK, FastHistogram, FastValue, multiprocess
from .exemplars import ExemplarRecorder
from .outcomes import OUTCOMES, SKIPPED

if TYPE_CHECKING:
    from dramatiq import Actor, Broker, Message, Worker
    from opentelemetry.trace import SpanContext

    from .delivery import Delivery

#: Name of the processing-time histogram (its buckets carry exemplars).
PROCESSING_TIME = "dramatiq_message_processing_time"
#: Seconds. Jobs range from a ping (milliseconds) to a full site clone (many minutes).
PROCESSING_TIME_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
)  # fmt: skip
#: Distinct `error_type` label values per process before new ones are reported as "other".
MAX_ERROR_TYPES = 50
#: The `error_type` label of error classes beyond `MAX_ERROR_TYPES`.
OTHER_ERROR_TYPE = "other"


@dataclass(slots=True, frozen=True)
class _FastWrites:
    """What every delivery writes, in multiprocess mode: written directly, under one lock per hook."""

    in_progress: FastValue
    processing_time: FastHistogram
    processed: dict[str, FastValue]


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
    #: In multiprocess mode, the writes of every delivery (`fastpath.multiprocess_values`); else None.
    fast: _FastWrites | None = None


class PrometheusMetrics(Middleware):
    """Counts and times deliveries: a `DeliveryObserver` that reads the tracker's records.

    Metric names and labels are part of the dashboards' contract (README, "Metrics"). Everything is
    counted from the record `DeliveryTracker` keeps, so the outcome label is the outcome the span
    carries; the processing-time exemplar is the consumer span's context recorded there by tracing.
    As a middleware it only flushes this process's exemplars at worker shutdown.

    :param registry: where the metrics are registered; default: a new private registry (in worker
      processes prometheus_client's multiprocess files are what is served, whatever the registry).
    :param exemplar_dir: the metrics directory where this process persists its exemplars for the
      metrics server (`Settings.multiproc_dir`); None keeps exemplars on the in-process histogram.

    Example::

        metrics = PrometheusMetrics(registry=CollectorRegistry(), exemplar_dir=None)
        deliveries = DeliveryTracker(observers=[tracing, metrics])
        broker = StubBroker(middleware=[deliveries, tracing, metrics, Retries()])
        generate_latest(metrics.registry)
    """

    def __init__(self, *, registry: CollectorRegistry | None = None, exemplar_dir: str | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._exemplars = ExemplarRecorder(exemplar_dir, PROCESSING_TIME_BUCKETS) if exemplar_dir else None
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
            PROCESSING_TIME,
            "Time the actor took per delivery, in seconds (skipped deliveries excluded).",
            labels,
            registry=self.registry,
            buckets=PROCESSING_TIME_BUCKETS,
        )
        self._by_actor: dict[tuple[str, str], _ActorMetrics] = {}
        self._error_types: set[str] = set()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._booted = False

    # -- DeliveryObserver ----------------------------------------------------------------------------

    def delivery_started(self, delivery: Delivery) -> _ActorMetrics:
        metrics = self._metrics_for(delivery.queue, delivery.actor)
        fast = metrics.fast
        if fast is None:
            metrics.in_progress.inc()
        else:
            with WRITE_LOCK:
                fast.in_progress.add(1.0)
        return metrics

    def delivery_retried(self, delivery: Delivery, state: _ActorMetrics, message: Message[Any], *, first: bool) -> None:
        if first:
            state.retries.inc()

    def delivery_finished(self, delivery: Delivery, state: _ActorMetrics) -> None:
        outcome = delivery.outcome
        if outcome is None:
            return
        fast = state.fast
        if fast is None:
            state.in_progress.dec()
            if outcome.outcome != SKIPPED:
                self._observe(state, time.perf_counter() - delivery.started, delivery.span_context)
            state.processed[outcome.outcome].inc()
        else:
            timed = outcome.outcome != SKIPPED
            seconds = time.perf_counter() - delivery.started
            with WRITE_LOCK:
                fast.in_progress.add(-1.0)
                if timed:
                    fast.processing_time.observe(seconds)
                fast.processed[outcome.outcome].add(1.0)
            # In multiprocess mode exemplars go only to the recorder (prometheus_client drops them there).
            span_context = delivery.span_context
            exemplars = self._exemplars
            if timed and exemplars is not None and _sampled(span_context):
                exemplars.record(state.queue, state.actor, seconds, span_context.trace_id, span_context.span_id)
        exception = delivery.exception
        if outcome.error and exception is not None:
            self._error_counter(state, type(exception).__name__).inc()
        if delivery.message.failed:
            state.dead_lettered.inc()

    def delivery_abandoned(self, delivery: Delivery, state: _ActorMetrics) -> None:
        if state.fast is None:
            state.in_progress.dec()
        else:
            with WRITE_LOCK:
                state.fast.in_progress.add(-1.0)

    # -- middleware ------------------------------------------------------------------------------------

    def after_process_boot(self, broker: Broker) -> None:
        """A worker process started: every series of the broker's actors, at 0 (see the module docs)."""
        self._booted = True
        for actor in list(broker.actors.values()):
            self.initialise(actor)

    def after_declare_actor(self, broker: Broker, actor: Actor[Any, Any]) -> None:
        if self._booted:  # an actor declared after boot; before boot, `after_process_boot` does it
            self.initialise(actor)

    def initialise(self, actor: Actor[Any, Any]) -> None:
        """Create `actor`'s series at 0: processed (every outcome), processing time, retries,
        dead-lettered, in progress, and errors for each exception class in its `throws` option."""
        metrics = self._metrics_for(canonical_queue(actor.queue_name), actor.actor_name)
        throws = actor.options.get("throws") or ()
        for error_class in throws if isinstance(throws, tuple) else (throws,):
            self._error_counter(metrics, error_class.__name__)

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if self._exemplars is not None:
            self._exemplars.flush()

    def _observe(self, metrics: _ActorMetrics, seconds: float, span_context: SpanContext | None) -> None:
        if not _sampled(span_context):
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

    def _metrics_for(self, queue: str, actor: str) -> _ActorMetrics:
        key = (queue, actor)
        metrics = self._by_actor.get(key)
        if metrics is None:
            with self._lock:
                metrics = self._by_actor.get(key)
                if metrics is None:
                    metrics = _ActorMetrics(
                        queue=queue,
                        actor=actor,
                        in_progress=self.in_progress.labels(queue, actor),
                        processing_time=self.processing_time.labels(queue, actor),
                        processed={outcome: self.processed.labels(queue, actor, outcome) for outcome in OUTCOMES},
                        retries=self.retries.labels(queue, actor),
                        dead_lettered=self.dead_lettered.labels(queue, actor),
                        errors={},
                    )
                    if multiprocess(metrics.in_progress):
                        metrics.fast = _FastWrites(
                            in_progress=FastValue(metrics.in_progress._value),
                            processing_time=FastHistogram(metrics.processing_time),
                            processed={
                                outcome: FastValue(child._value) for outcome, child in metrics.processed.items()
                            },
                        )
                    self._by_actor[key] = metrics
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


def _sampled(span_context: SpanContext | None) -> TypeGuard[SpanContext]:
    """Whether an observation timed under this span context gets it as its exemplar."""
    return span_context is not None and span_context.is_valid and bool(span_context.trace_flags.sampled)
