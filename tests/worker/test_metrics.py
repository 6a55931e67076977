"""Metric values after each delivery scenario: counted once, gauges back to zero, bounded labels."""

from __future__ import annotations

import dramatiq

from worker_app.errors import InvalidJobArguments
from worker_app.observability.metrics import MAX_ERROR_TYPES, OTHER_ERROR_TYPE

JOB = {"queue": "jobs", "actor": "job"}


def processed(stack, outcome, **labels):
    return stack.value("dramatiq_messages_processed_total", **(labels or JOB), outcome=outcome)


def test_success_is_counted_and_timed_and_in_progress_returns_to_zero(stack):
    @stack.actor(queue_name="jobs")
    def job():
        assert stack.value("dramatiq_messages_in_progress", **JOB) == 1.0

    for _ in range(3):
        job.send()
    stack.run("jobs")

    assert processed(stack, "success") == 3
    assert stack.value("dramatiq_message_processing_time_count", **JOB) == 3
    assert stack.value("dramatiq_message_processing_time_sum", **JOB) > 0
    assert stack.value("dramatiq_messages_in_progress", **JOB) == 0
    assert stack.value("dramatiq_errors_total", **JOB, error_type="ValueError") == 0


def test_a_retry_is_counted_once_and_the_error_once_per_failed_delivery(stack):
    calls = []

    @stack.actor(queue_name="jobs", max_retries=5)
    def job():
        calls.append(1)
        if len(calls) <= 2:
            raise ValueError("not yet")

    job.send()
    stack.run("jobs")

    assert len(calls) == 3
    assert stack.value("dramatiq_message_retries_total", **JOB) == 2
    assert processed(stack, "retried") == 2
    assert processed(stack, "success") == 1
    assert stack.value("dramatiq_errors_total", **JOB, error_type="ValueError") == 2
    assert stack.value("dramatiq_messages_dead_lettered_total", **JOB) == 0
    assert stack.value("dramatiq_messages_in_progress", **JOB) == 0


def test_dead_lettered_after_retries_exhausted(stack):
    @stack.actor(queue_name="jobs", max_retries=1)
    def job():
        raise ValueError("never")

    job.send()
    stack.run("jobs")

    assert stack.value("dramatiq_message_retries_total", **JOB) == 1
    assert processed(stack, "retried") == 1
    assert processed(stack, "failed") == 1
    assert stack.value("dramatiq_messages_dead_lettered_total", **JOB) == 1
    assert stack.value("dramatiq_errors_total", **JOB, error_type="ValueError") == 2


def test_permanent_failure_is_not_retried(stack):
    @stack.actor(queue_name="jobs", throws=(InvalidJobArguments,))
    def job():
        raise InvalidJobArguments("bad")

    job.send()
    stack.run("jobs")

    assert stack.value("dramatiq_message_retries_total", **JOB) == 0
    assert processed(stack, "failed") == 1
    assert stack.value("dramatiq_messages_dead_lettered_total", **JOB) == 1
    assert stack.value("dramatiq_errors_total", **JOB, error_type="InvalidJobArguments") == 1


def test_retry_exception_counts_a_retry_but_no_error(stack):
    calls = []

    @stack.actor(queue_name="jobs", max_retries=3)
    def job():
        calls.append(1)
        if len(calls) == 1:
            raise dramatiq.Retry(delay=5)

    job.send()
    stack.run("jobs")
    assert stack.value("dramatiq_message_retries_total", **JOB) == 1
    assert processed(stack, "retried") == 1
    assert processed(stack, "success") == 1
    assert stack.value("dramatiq_errors_total", **JOB, error_type="Retry") == 0


def test_skipped_messages_never_push_in_progress_below_zero(stack):
    @stack.actor(queue_name="jobs", max_age=1)
    def job():
        raise AssertionError("must not run")

    for _ in range(3):
        message = job.message()
        stack.broker.enqueue(message.copy(message_timestamp=message.message_timestamp - 60_000))
    stack.run("jobs")

    assert processed(stack, "skipped") == 3
    assert stack.value("dramatiq_messages_in_progress", **JOB) == 0
    assert stack.value("dramatiq_message_processing_time_count", **JOB) == 0
    # The age limit fails the message, which dead-letters it.
    assert stack.value("dramatiq_messages_dead_lettered_total", **JOB) == 3


def test_delayed_messages_are_processed_once_without_a_retry(stack):
    @stack.actor(queue_name="jobs")
    def job():
        return None

    job.send_with_options(delay=30)
    stack.run("jobs")
    assert processed(stack, "success") == 1
    assert stack.value("dramatiq_message_retries_total", **JOB) == 0


def test_error_type_label_is_bounded(stack):
    classes = [type(f"Error{index}", (Exception,), {}) for index in range(MAX_ERROR_TYPES + 5)]

    @stack.actor(queue_name="jobs", max_retries=0)
    def job(index):
        raise classes[index]()

    for index in range(len(classes)):
        job.send(index)
    stack.run("jobs")

    samples = [
        sample
        for metric in stack.registry.collect()
        if metric.name == "dramatiq_errors"
        for sample in metric.samples
        if sample.name == "dramatiq_errors_total"
    ]
    labels = {sample.labels["error_type"] for sample in samples}
    assert len(labels) == MAX_ERROR_TYPES + 1
    assert OTHER_ERROR_TYPE in labels
    assert sum(sample.value for sample in samples) == len(classes)


def test_every_series_of_the_known_actors_exists_at_zero_from_process_boot(stack):
    """Prometheus guidance for labelled metrics: known label values are initialised, so `rate()`
    panels read 0 and absence alerts work before the first job."""

    @stack.actor(queue_name="jobs", throws=(InvalidJobArguments,))
    def job(): ...

    assert stack.registry.get_sample_value("dramatiq_messages_processed_total", {**JOB, "outcome": "success"}) is None
    stack.broker.emit_after("process_boot")  # what the Dramatiq CLI does in each worker process

    @stack.actor(queue_name="later", actor_name="later")
    def declared_after_boot(): ...

    for labels in (JOB, {"queue": "later", "actor": "later"}):
        for outcome in ("success", "retried", "failed", "skipped"):
            assert (
                stack.registry.get_sample_value("dramatiq_messages_processed_total", {**labels, "outcome": outcome})
                == 0
            )
        for name in (
            "dramatiq_message_retries_total",
            "dramatiq_messages_dead_lettered_total",
            "dramatiq_messages_in_progress",
            "dramatiq_message_processing_time_count",
            "dramatiq_message_processing_time_sum",
        ):
            assert stack.registry.get_sample_value(name, labels) == 0, name
        assert stack.registry.get_sample_value("dramatiq_message_processing_time_bucket", {**labels, "le": "+Inf"}) == 0
    # error_type: only the classes an actor declares it throws are known in advance.
    assert stack.registry.get_sample_value("dramatiq_errors_total", {**JOB, "error_type": "InvalidJobArguments"}) == 0
    later_errors = {
        sample.labels["error_type"]
        for metric in stack.registry.collect()
        if metric.name == "dramatiq_errors"
        for sample in metric.samples
        if sample.labels.get("actor") == "later" and sample.name == "dramatiq_errors_total"
    }
    # `later` declares nothing itself; ArgumentCheck makes every actor throw InvalidJobArguments (arguments
    # that do not fit its signature), and no other class is known before it happens.
    assert later_errors == {"InvalidJobArguments"}

    job.send()
    stack.run("jobs")
    assert processed(stack, "success") == 1, "counting goes on from the initialised series"
