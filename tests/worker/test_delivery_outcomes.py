"""Every way a delivery ends, run for real: the span, the counters and the log line tell the same story.

One table of scenarios, each a real Dramatiq delivery (StubBroker + Worker in this process, the
package's middleware stack, an in-memory span exporter, a private Prometheus registry). For each,
the consumer spans' status and `dramatiq.message.outcome`, the counters, the processing-time
exemplar and the `Job dead-lettered` log line are checked against the expected outcome and against
each other: they all read the one record `DeliveryTracker` decided.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import pytest
from dramatiq import Middleware
from dramatiq.middleware import SkipMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from worker_app.errors import InvalidJobArguments
from worker_app.observability.conventions import ERROR_TYPE, MESSAGE_DEAD_LETTERED, MESSAGE_OUTCOME
from worker_app.observability.failure_log import LOGGER_NAME
from worker_app.observability.metrics import PROCESSING_TIME

QUEUE = "jobs"
ACTOR = "job"
LABELS = {"queue": QUEUE, "actor": ACTOR}


class NothingToDo(Exception):
    """Declared in the actor's `non_error_exceptions`."""


class _SkipEverything(Middleware):
    """A middleware that skips every message before the actor runs (without failing it)."""

    def before_process_message(self, broker, message):
        raise SkipMessage


@dataclass(frozen=True)
class Delivered:
    """What one delivery should look like."""

    outcome: str
    #: `error.type` of a span whose status is ERROR; None: status unset.
    error_type: str | None = None
    #: The actor raised an error (recorded as an exception event, counted in dramatiq_errors_total).
    error: bool = False
    dead_lettered: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    body: Callable[[int], Any]  # called with the attempt number (0, 1, ...)
    deliveries: tuple[Delivered, ...]
    actor_options: dict[str, Any] = field(default_factory=dict)
    send_options: dict[str, Any] = field(default_factory=dict)
    #: Installs the middleware a scenario needs, e.g. one that skips.
    skip_all: bool = False
    #: Stop the worker while the first attempt runs (an actor with `notify_shutdown`).
    stop_while_running: bool = False
    #: Emit `process_boot` first, as the Dramatiq CLI does (starts `TimeLimit`'s timer thread).
    boot: bool = False


def _returns(attempt: int) -> str:
    return "done"


def _fails_once(attempt: int) -> None:
    if attempt == 0:
        raise ValueError("first attempt fails")


def _always_fails(attempt: int) -> None:
    raise InvalidJobArguments("source_url: scheme must be http or https, got ftp")


def _retry_once(attempt: int) -> None:
    if attempt == 0:
        raise dramatiq.Retry(delay=10)


def _nothing_to_do(attempt: int) -> None:
    raise NothingToDo("the site is already up to date")


def _runs_long(attempt: int) -> None:
    if attempt == 0:
        for _ in range(500):  # bounded: 5 s at most, interrupted long before
            time.sleep(0.01)


SCENARIOS = [
    Scenario("success", _returns, (Delivered("success"),)),
    Scenario(
        "retried",
        _fails_once,
        (Delivered("retried", error=True), Delivered("success")),
        actor_options={"max_retries": 1},
    ),
    Scenario(
        "failed for good",
        _always_fails,
        (Delivered("failed", error_type="worker_app.errors.InvalidJobArguments", error=True, dead_lettered=True),),
        actor_options={"throws": (InvalidJobArguments,)},
    ),
    Scenario("skipped", _returns, (Delivered("skipped"),), skip_all=True),
    Scenario("Retry", _retry_once, (Delivered("retried"), Delivered("success")), actor_options={"max_retries": 2}),
    Scenario(
        "non_error_exceptions",
        _nothing_to_do,
        (Delivered("failed", dead_lettered=True),),
        actor_options={"non_error_exceptions": (NothingToDo,), "max_retries": 0},
    ),
    Scenario(
        "age limit",
        _returns,
        (Delivered("skipped", dead_lettered=True),),
        send_options={"max_age": 1},
    ),
    Scenario(
        "time limit",
        _runs_long,
        (
            Delivered(
                "failed",
                error_type="dramatiq.middleware.time_limit.TimeLimitExceeded",
                error=True,
                dead_lettered=True,
            ),
        ),
        actor_options={"time_limit": 50, "max_retries": 0},
        boot=True,
    ),
    Scenario(
        "shutdown requeue",
        _runs_long,
        (Delivered("retried", error=True),),
        actor_options={"notify_shutdown": True, "max_retries": 3},
        stop_while_running=True,
    ),
]


class _FailureLines(logging.Handler):
    """The failure log's lines, each with the span that was current when it was written (what the
    JSON formatter puts in `trace_id`/`span_id`)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), trace.get_current_span().get_span_context().span_id))


@pytest.fixture
def failure_lines() -> Iterator[_FailureLines]:
    handler = _FailureLines()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _run(stack, scenario: Scenario) -> None:
    attempts = [0]
    running = threading.Event()

    def job() -> Any:
        attempt = attempts[0]
        attempts[0] += 1
        running.set()
        return scenario.body(attempt)

    job.__name__ = ACTOR
    actor = stack.actor(queue_name=QUEUE, actor_name=ACTOR, **scenario.actor_options)(job)
    if scenario.skip_all:
        stack.broker.add_middleware(_SkipEverything())
    if scenario.boot:
        stack.broker.emit_after("process_boot")
    if scenario.send_options.get("max_age"):
        actor.send_with_options(**scenario.send_options)
        time.sleep(0.01)  # older than its max age before any worker sees it
    else:
        actor.send_with_options(**scenario.send_options)

    if not scenario.stop_while_running:
        stack.run(QUEUE)
        return
    worker = dramatiq.Worker(stack.broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        assert running.wait(10), "the actor never started"
    finally:
        worker.stop(timeout=10_000)


def _consumers(stack) -> list[ReadableSpan]:
    spans = [span for span in stack.spans() if span.kind is SpanKind.CONSUMER]
    return sorted(spans, key=lambda span: span.start_time or 0)


def _exemplar_span_ids(stack) -> set[int]:
    found = set()
    for metric in stack.registry.collect():
        if metric.name == PROCESSING_TIME:
            for sample in metric.samples:
                if sample.exemplar is not None and sample.labels.get("actor") == ACTOR:
                    found.add(int(sample.exemplar.labels["span_id"], 16))
    return found


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.name for scenario in SCENARIOS])
def test_span_counters_and_log_agree(stack, failure_lines, scenario: Scenario):
    _run(stack, scenario)

    consumers = _consumers(stack)
    expected = scenario.deliveries
    assert [span.attributes[MESSAGE_OUTCOME] for span in consumers] == [d.outcome for d in expected]

    # The span says what the record decided.
    for span, delivered in zip(consumers, expected, strict=True):
        if delivered.error_type is None:
            assert span.status.status_code is StatusCode.UNSET, span.status
            assert ERROR_TYPE not in span.attributes
        else:
            assert span.status.status_code is StatusCode.ERROR
            assert span.attributes[ERROR_TYPE] == delivered.error_type
        assert bool(span.attributes.get(MESSAGE_DEAD_LETTERED)) is delivered.dead_lettered
        assert any(event.name == "exception" for event in span.events) is delivered.error

    # The counters say the same, delivery for delivery.
    for outcome in ("success", "retried", "failed", "skipped"):
        spans_with = sum(1 for span in consumers if span.attributes[MESSAGE_OUTCOME] == outcome)
        assert stack.value("dramatiq_messages_processed_total", **LABELS, outcome=outcome) == spans_with, outcome
    errors = sum(
        stack.value("dramatiq_errors_total", **LABELS, error_type=name)
        for name in ("ValueError", "InvalidJobArguments", "TimeLimitExceeded", "Shutdown", "NothingToDo")
    )
    assert errors == sum(d.error for d in expected)
    assert stack.value("dramatiq_message_retries_total", **LABELS) == sum(d.outcome == "retried" for d in expected)
    assert stack.value("dramatiq_messages_dead_lettered_total", **LABELS) == sum(d.dead_lettered for d in expected)
    assert stack.value("dramatiq_messages_in_progress", **LABELS) == 0
    processed = [span for span in consumers if span.attributes[MESSAGE_OUTCOME] != "skipped"]
    assert stack.value(f"{PROCESSING_TIME}_count", **LABELS) == len(processed)

    # The exemplar is a span of this scenario's deliveries, taken from the record, not from hook order.
    exemplars = _exemplar_span_ids(stack)
    assert exemplars <= {span.context.span_id for span in processed}
    assert bool(exemplars) is bool(processed)

    # One failure line per delivery that dead-lettered its message with an exception, written
    # inside that delivery's span.
    failed = [span for span in consumers if span.attributes[MESSAGE_OUTCOME] == "failed"]
    assert [span_id for _, span_id in failure_lines.lines] == [span.context.span_id for span in failed]
    assert all(line.startswith("Job dead-lettered: ") for line, _ in failure_lines.lines)
