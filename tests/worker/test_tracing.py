"""Spans of sends and deliveries, checked on real Dramatiq processing (StubBroker + Worker)."""

from __future__ import annotations

import dramatiq
import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.trace import SpanKind, StatusCode

from worker_app.errors import InvalidJobArguments
from worker_app.observability.propagation import CONTEXT_OPTION, PREVIOUS_ATTEMPT_OPTION


def by_kind(spans, kind):
    return [span for span in spans if span.kind is kind]


def test_send_and_process_form_one_trace_with_semantic_attributes(stack):
    @stack.actor(queue_name="jobs")
    def work(x):
        return None

    message = work.send(1)
    stack.run("jobs")

    (producer,) = by_kind(stack.spans(), SpanKind.PRODUCER)
    (consumer,) = by_kind(stack.spans(), SpanKind.CONSUMER)
    assert producer.name == "send jobs"
    assert consumer.name == "process jobs"
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent.span_id == producer.context.span_id
    for span, operation in ((producer, "send"), (consumer, "process")):
        assert span.attributes["messaging.system"] == "dramatiq"
        assert span.attributes["messaging.operation.type"] == operation
        assert span.attributes["messaging.operation.name"] == operation
        assert span.attributes["messaging.destination.name"] == "jobs"
        assert span.attributes["messaging.message.id"] == message.message_id
        assert span.attributes["dramatiq.actor.name"] == "work"
    assert consumer.attributes["dramatiq.message.retries"] == 0
    assert consumer.attributes["dramatiq.message.outcome"] == "success"
    assert consumer.status.status_code is StatusCode.UNSET
    assert "error.type" not in consumer.attributes


def test_producer_span_is_a_child_of_the_callers_span_and_baggage_travels(stack):
    seen = {}

    @stack.actor(queue_name="jobs")
    def work():
        seen["tenant"] = baggage.get_baggage("tenant")
        seen["trace_id"] = trace.get_current_span().get_span_context().trace_id

    tracer = stack.provider.get_tracer("api")
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with tracer.start_as_current_span("POST /clone") as request_span:
            work.send()
    finally:
        context.detach(token)
    stack.run("jobs")

    (producer,) = by_kind(stack.spans(), SpanKind.PRODUCER)
    assert producer.parent.span_id == request_span.get_span_context().span_id
    assert seen == {"tenant": "acme", "trace_id": request_span.get_span_context().trace_id}


def test_retry_keeps_the_creation_context_and_links_to_the_failed_attempt(stack):
    attempts = []

    @stack.actor(queue_name="jobs", max_retries=3)
    def flaky():
        attempts.append(dramatiq.middleware.CurrentMessage.get_current_message().options.copy())
        if len(attempts) == 1:
            raise ConnectionError("upstream timed out")

    flaky.send()
    stack.run("jobs")

    (producer,) = by_kind(stack.spans(), SpanKind.PRODUCER)
    first, second = sorted(by_kind(stack.spans(), SpanKind.CONSUMER), key=lambda span: span.start_time)
    assert len(stack.spans()) == 3, "a retry must not create another send span"
    for consumer in (first, second):
        assert consumer.context.trace_id == producer.context.trace_id
        assert consumer.parent.span_id == producer.context.span_id
    assert attempts[1][CONTEXT_OPTION] == attempts[0][CONTEXT_OPTION]
    # The failed attempt: exception recorded, but a retried failure is not the operation's error.
    assert first.attributes["dramatiq.message.outcome"] == "retried"
    assert [event.name for event in first.events] == ["exception"]
    assert first.status.status_code is StatusCode.UNSET
    assert "error.type" not in first.attributes
    # The retry links to it and succeeds.
    assert second.attributes["dramatiq.message.retries"] == 1
    assert [(link.context.trace_id, link.context.span_id) for link in second.links] == [
        (first.context.trace_id, first.context.span_id)
    ]
    assert second.links[0].attributes["dramatiq.link.type"] == "previous_attempt"
    assert second.attributes["dramatiq.message.outcome"] == "success"
    assert PREVIOUS_ATTEMPT_OPTION not in attempts[0]


def test_final_failure_is_an_error_with_error_type(stack):
    @stack.actor(queue_name="jobs", max_retries=1)
    def broken():
        raise KeyError("missing")

    broken.send()
    stack.run("jobs")

    first, last = sorted(by_kind(stack.spans(), SpanKind.CONSUMER), key=lambda span: span.start_time)
    assert first.status.status_code is StatusCode.UNSET
    assert last.status.status_code is StatusCode.ERROR
    assert last.attributes["error.type"] == "KeyError"
    assert last.attributes["dramatiq.message.outcome"] == "failed"
    assert last.attributes["dramatiq.message.dead_lettered"] is True
    assert "KeyError" in last.status.description
    assert len(stack.broker.dead_letters) == 1


def test_permanent_error_dead_letters_at_once_with_qualified_error_type(stack):
    @stack.actor(queue_name="jobs", throws=(InvalidJobArguments,))
    def strict():
        raise InvalidJobArguments("source_url: scheme must be http or https, got ftp")

    strict.send()
    stack.run("jobs")

    (consumer,) = by_kind(stack.spans(), SpanKind.CONSUMER)
    assert consumer.status.status_code is StatusCode.ERROR
    assert consumer.attributes["error.type"] == "worker_app.errors.InvalidJobArguments"
    assert consumer.status.description.endswith("source_url: scheme must be http or https, got ftp")


def test_retry_exception_and_declared_non_errors_are_not_errors(stack):
    class NothingToDo(Exception):
        pass

    calls = []

    @stack.actor(queue_name="jobs", max_retries=2)
    def later():
        calls.append(1)
        if len(calls) == 1:
            raise dramatiq.Retry(delay=10)

    @stack.actor(queue_name="jobs", non_error_exceptions=(NothingToDo,), max_retries=0)
    def idle():
        raise NothingToDo

    later.send()
    idle.send()
    stack.run("jobs")

    consumers = by_kind(stack.spans(), SpanKind.CONSUMER)
    assert len(consumers) == 3
    assert all(span.status.status_code is StatusCode.UNSET for span in consumers)
    assert all("error.type" not in span.attributes for span in consumers)
    assert all(not span.events for span in consumers), "non-errors record no exception"


def test_skipped_message_span_ends_and_is_not_an_error(stack):
    @stack.actor(queue_name="jobs", max_age=1)
    def stale():
        raise AssertionError("must not run")

    message = stale.message()
    old = message.copy(message_timestamp=message.message_timestamp - 60_000)
    stack.broker.enqueue(old)
    stack.run("jobs")

    (consumer,) = by_kind(stack.spans(), SpanKind.CONSUMER)
    assert consumer.end_time is not None
    assert consumer.attributes["dramatiq.message.outcome"] == "skipped"
    assert consumer.status.status_code is StatusCode.UNSET


def test_delayed_message_is_not_sent_twice_and_stays_in_its_trace(stack):
    @stack.actor(queue_name="jobs")
    def later():
        return None

    later.send_with_options(delay=50)
    stack.run("jobs")

    (producer,) = by_kind(stack.spans(), SpanKind.PRODUCER)
    (consumer,) = by_kind(stack.spans(), SpanKind.CONSUMER)
    assert producer.attributes["dramatiq.message.delay_ms"] == 50
    assert producer.attributes["messaging.destination.name"] == "jobs", "no .DQ suffix"
    assert consumer.parent.span_id == producer.context.span_id


def test_arguments_are_not_recorded_unless_asked(stack):
    @stack.actor(queue_name="jobs")
    def secretive(token):
        return None

    secretive.send("s3cr3t-token")
    stack.run("jobs")
    for span in stack.spans():
        assert "s3cr3t-token" not in repr(dict(span.attributes))
        assert "dramatiq.message.arguments" not in span.attributes


def test_arguments_recorded_on_opt_in(stack):
    stack.tracing._record_arguments = True

    @stack.actor(queue_name="jobs")
    def visible(a, b=None):
        return None

    visible.send(1, b="two")
    stack.run("jobs")
    for span in stack.spans():
        assert span.attributes["dramatiq.message.arguments"] == '{"args": [1], "kwargs": {"b": "two"}}'


def test_failed_enqueue_ends_its_send_span_as_an_error(stack, monkeypatch):
    @stack.actor(queue_name="jobs")
    def work():
        return None

    original = stack.broker.enqueue

    def broken_enqueue(message, *, delay=None):
        stack.broker.emit_before("enqueue", message, delay)
        raise ConnectionError("redis down")

    monkeypatch.setattr(stack.broker, "enqueue", broken_enqueue)
    with pytest.raises(ConnectionError):
        work.send()
    monkeypatch.setattr(stack.broker, "enqueue", original)
    work.send()

    failed, sent = sorted(by_kind(stack.spans(), SpanKind.PRODUCER), key=lambda span: span.start_time)
    assert failed.status.status_code is StatusCode.ERROR
    assert sent.status.status_code is StatusCode.UNSET
