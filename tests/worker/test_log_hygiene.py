"""Job arguments stay out of the log, URL credentials are redacted, and no line is huge."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from worker_app.observability.log_hygiene import LogHygiene, redact
from worker_app.observability.logs import JsonFormatter

SECRET = "s3cr3t-Pa55"
HUGE = "x" * (10 * 1024 * 1024)


@pytest.fixture
def dramatiq_log() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    """Dramatiq's own loggers, written the way the worker writes them (JSON, with the filter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("svc"))
    handler.addFilter(LogHygiene())
    logger = logging.getLogger("dramatiq")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield stream, handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_failing_job_is_logged_by_actor_and_id_without_its_arguments(stack, dramatiq_log):
    stream, _ = dramatiq_log

    @stack.actor(queue_name="jobs", max_retries=0)
    def clone(source_url: str, blob: str) -> None:
        raise ValueError(f"cannot reach {source_url}")

    message = clone.send(f"http://admin:{SECRET}@blog.example/", HUGE)
    stack.run("jobs")

    text = stream.getvalue()
    assert SECRET not in text
    assert HUGE[:10_000] not in text
    failed = [line for line in lines(stream) if str(line["message"]).startswith("Failed to process message")]
    assert failed, text[:2000]
    assert failed[0]["message"] == f"Failed to process message clone[{message.message_id}] with unhandled exception."
    # The traceback is kept (redacted): the exception named the URL.
    assert "ValueError: cannot reach http://***@blog.example/" in str(failed[0]["exception"])
    assert failed[0]["error_type"] == "ValueError"
    assert max(len(line) for line in text.splitlines()) < 32_000


def test_arguments_can_be_opted_in_and_are_still_redacted_and_bounded(stack, dramatiq_log):
    stream, handler = dramatiq_log
    handler.filters.clear()
    handler.addFilter(LogHygiene(log_arguments=True))

    @stack.actor(queue_name="jobs", max_retries=0)
    def clone(source_url: str, blob: str) -> None:
        raise ValueError("no")

    clone.send(f"http://admin:{SECRET}@blog.example/", HUGE)
    stack.run("jobs")
    text = stream.getvalue()
    assert "clone('http://***@blog.example/', 'xxxx" in text
    assert SECRET not in text
    assert max(len(line) for line in text.splitlines()) < 32_000


def test_every_part_of_a_record_is_cleaned():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(LogHygiene(max_message_chars=100, max_field_chars=50, max_exception_chars=400))
    logger = logging.getLogger("worker_app.tests.hygiene")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError(f"redis://:{SECRET}@cache:6379/0")
        except RuntimeError:
            logger.exception(
                "connecting to %s",
                f"https://u:{SECRET}@api.example/x",
                extra={"target": {"url": f"http://u:{SECRET}@h/", "items": list(range(1000))}, "blob": HUGE},
            )
        try:
            raise RuntimeError("y" * 5000)
        except RuntimeError:
            logger.exception("long")
    finally:
        logger.removeHandler(handler)
    first, second = stream.getvalue().split("\nlong\n")
    assert SECRET not in first
    assert first.startswith("connecting to https://***@api.example/x")
    assert "RuntimeError: redis://***@cache:6379/0" in first
    assert "characters cut" in second
    assert len(second) < 500


def test_redact_keeps_urls_without_credentials_and_mail_addresses():
    assert (
        redact("see https://blog.example/@author and a@b.example") == "see https://blog.example/@author and a@b.example"
    )
    assert redact("rediss://user:p%40ss@h:6380") == "rediss://***@h:6380"
    assert redact("'http://tok@h/' and \"ftp://a:b@c\"") == "'http://***@h/' and \"ftp://***@c\""


def test_extra_fields_are_redacted_and_bounded_in_json_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("svc"))
    handler.addFilter(LogHygiene(max_field_chars=50))
    logger = logging.getLogger("worker_app.tests.hygiene.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "refused", extra={"target": {"url": f"http://u:{SECRET}@h/", "items": list(range(1000))}, "blob": HUGE}
        )
    finally:
        logger.removeHandler(handler)
    (line,) = lines(stream)
    assert line["target"]["url"] == "http://***@h/"  # type: ignore[index]
    assert len(line["target"]["items"]) == 201  # type: ignore[index,arg-type]
    assert str(line["blob"]).endswith(f"... [{len(HUGE) - 50} more characters]")
    assert len(stream.getvalue()) < 5000
