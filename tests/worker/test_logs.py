"""JSON log lines: correlation with the current span and job, extras, exceptions."""

from __future__ import annotations

import io
import json
import logging

from worker_app.observability.logs import JsonFormatter


def capture(stack_logger_name: str = "worker_app.tests"):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("svc"))
    logger = logging.getLogger(stack_logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream


def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_inside_a_job_carry_trace_and_job_ids(stack):
    logger, stream = capture()

    @stack.actor(queue_name="jobs")
    def job():
        logger.info("working", extra={"items": 3})

    message = job.send()
    stack.run("jobs")

    (record,) = lines(stream)
    (consumer,) = [span for span in stack.spans() if span.name == "process jobs"]
    assert record["message"] == "working"
    assert record["level"] == "INFO"
    assert record["logger"] == "worker_app.tests"
    assert record["service"] == "svc"
    assert record["items"] == 3
    assert record["trace_id"] == format(consumer.context.trace_id, "032x")
    assert record["span_id"] == format(consumer.context.span_id, "016x")
    assert record["actor"] == "job"
    assert record["message_id"] == message.message_id
    assert record["timestamp"].endswith("+00:00")


def test_lines_outside_a_job_have_no_ids_and_exceptions_are_one_field():
    logger, stream = capture("worker_app.tests.plain")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    (record,) = lines(stream)
    assert "trace_id" not in record
    assert "actor" not in record
    assert record["error_type"] == "ValueError"
    assert "Traceback" in record["exception"]
    assert "ValueError: boom" in record["exception"]


def test_a_dead_lettered_job_logs_its_reason_in_its_trace(stack, caplog):
    from worker_app.errors import InvalidJobArguments

    @stack.actor(queue_name="jobs", throws=(InvalidJobArguments,))
    def job():
        raise InvalidJobArguments("source_url: scheme must be http or https, got ftp")

    job.send()
    with caplog.at_level(logging.WARNING, logger="worker_app.jobs"):
        stack.run("jobs")
    (record,) = [r for r in caplog.records if r.name == "worker_app.jobs"]
    assert record.getMessage() == "Job dead-lettered: source_url: scheme must be http or https, got ftp"
    assert record.error_type == "InvalidJobArguments"
    assert record.dead_letter_queue == "jobs.XQ"
