"""Structured logging: one JSON object per line, correlated with the current trace and job.

Every record carries `trace_id`/`span_id` when a span is current (the OTEL_PYTHON_LOG_CORRELATION
convention, under the names log pipelines expect) and `actor`/`message_id` inside a job, so a log
line leads to its trace and its message.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

from dramatiq.middleware import CurrentMessage
from opentelemetry import trace

from .log_hygiene import LogHygiene

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged as a field.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, service, process, thread,
    the trace and job it belongs to, `extra=` fields, and the exception if any.

    :param service_name: the `service` field of every line.

    Example::

        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter("wp-k8s-service-worker"))
    """

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self._service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self._service_name,
            "process": record.process,
            "thread": record.threadName,
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            payload["trace_id"] = format(span_context.trace_id, "032x")
            payload["span_id"] = format(span_context.span_id, "016x")
            payload["trace_sampled"] = span_context.trace_flags.sampled
        message = CurrentMessage.get_current_message()
        if message is not None:
            payload["actor"] = message.actor_name
            payload["message_id"] = message.message_id
            payload["queue"] = message.queue_name
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_") and key not in payload:
                payload[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            payload["error_type"] = record.exc_info[0].__name__
            payload["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, default=str, ensure_ascii=False)


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at the time of the record.

    Dramatiq's worker processes replace `sys.stderr` with a pipe to the parent after they start, so a
    handler bound to the original stream would bypass the parent's serialised log output.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """Ignored: the stream is always the current sys.stderr."""


def configure_logging(*, level: str, log_format: str, service_name: str, log_arguments: bool = False) -> None:
    """Route every logger to one stderr handler in the chosen format (idempotent).

    Every record is cleaned by `LogHygiene` (job arguments out unless `log_arguments`, URL
    credentials redacted, sizes bounded).

    :param level: the root logger's level name (`LOG_LEVEL`).
    :param log_format: `json` (one object per line) or `text` (`LOG_FORMAT`).
    :param service_name: the `service` field of JSON lines.
    :param log_arguments: keep job arguments in Dramatiq's log lines (`WORKER_LOG_ARGUMENTS`).
    """
    handler = StderrHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(service_name))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # A dead collector makes the exporter log every failed batch; one line per minute is enough to
    # notice, and the dropped-span counter tells how much was lost.
    handler.addFilter(_RateLimit("opentelemetry.", 60.0))
    handler.addFilter(LogHygiene(log_arguments=log_arguments))  # after the rate limit: it keys on templates


class _RateLimit(logging.Filter):
    """Lets one record per logger and message template under `prefix` through every `interval` s."""

    def __init__(self, prefix: str, interval: float) -> None:
        super().__init__()
        self._prefix = prefix
        self._interval = interval
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefix):
            return True
        key = (record.name, record.msg)
        last = self._last.get(key)
        if last is not None and record.created - last < self._interval:
            return False
        self._last[key] = record.created
        return True
