"""A logging filter that keeps job arguments, credentials and megabytes out of the log.

Dramatiq's worker names a message in its log lines with `str(message)`, which is the actor call
with every argument (`clone_wordpress('http://user:pass@host/', ...)`), so a refused URL's
password, or a 10 MB argument, landed in the log. `LogHygiene`, installed on the log handler:

- replaces every Dramatiq message in a record's arguments with `actor[message id]`, unless
  arguments are opted in (`log_arguments=True`, from `WORKER_LOG_ARGUMENTS`, as
  `WORKER_TRACE_ARGUMENTS` does for spans);
- redacts the user information of every URL (`scheme://user:password@` becomes `scheme://***@`) in
  the message, in every field passed with `extra=`, and in the exception and stack text;
- bounds what one record can weigh: the message to `max_message_chars`, each string field to
  `max_field_chars` (containers to `MAX_ITEMS` items, `MAX_DEPTH` levels), the traceback to
  `max_exception_chars` (its first and last parts: where it started and what was raised).

Tracebacks are rendered here (redacted and bounded) into `exc_text` and the `exception` and
`error_type` fields, so every formatter shows the same cleaned text.

Example::

    handler.addFilter(LogHygiene(log_arguments=False))
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

from dramatiq.broker import MessageProxy
from dramatiq.message import Message

#: `scheme://userinfo@`: the userinfo (user, password or token) is replaced. Both parts are bounded
#: and a scheme must start a word, so the search stays linear on megabytes of text.
_URL_USERINFO = re.compile(r"(?<![A-Za-z0-9+.\-])([A-Za-z][A-Za-z0-9+.\-]{0,31}://)[^\s/?#@'\"<>]{1,2048}@")
REDACTED_USERINFO = r"\1***@"
MAX_ITEMS = 200
MAX_DEPTH = 6

# Attributes every LogRecord has; anything else was passed with `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact(text: str) -> str:
    """`text` with the user information of every URL in it replaced by `***`."""
    if "://" not in text:
        return text
    return _URL_USERINFO.sub(REDACTED_USERINFO, text)


def bound(text: str, limit: int) -> str:
    """At most `limit` characters (plus a note of how many were cut)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


class _NamedMessage:
    """How a Dramatiq message appears in a log line when its arguments stay out."""

    __slots__ = ("_text",)

    def __init__(self, message: Message[Any] | MessageProxy) -> None:
        self._text = f"{message.actor_name}[{message.message_id}]"

    def __str__(self) -> str:
        return self._text

    __repr__ = __str__


class LogHygiene(logging.Filter):
    """Cleans every record that reaches the handler (see the module docstring). Never drops one.

    Parameters (keyword-only):

    - `log_arguments`: keep Dramatiq messages' arguments in log lines (still redacted and bounded).
    - `max_message_chars`, `max_field_chars`, `max_exception_chars`: the bounds.
    """

    def __init__(
        self,
        *,
        log_arguments: bool = False,
        max_message_chars: int = 4096,
        max_field_chars: int = 2048,
        max_exception_chars: int = 16384,
    ) -> None:
        super().__init__()
        self._log_arguments = log_arguments
        self._max_message = max_message_chars
        self._max_field = max_field_chars
        self._max_exception = max_exception_chars

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._clean(record)
        except Exception:  # a filter that raises would lose the record: keep a safe minimum
            record.msg, record.args = bound(redact(str(record.msg)), self._max_message), None
        return True

    def _clean(self, record: logging.LogRecord) -> None:
        if record.args and not self._log_arguments:
            record.args = self._name_messages(record.args)
        message = record.getMessage()
        record.msg = bound(redact(message), self._max_message)
        record.args = None
        for key in record.__dict__.keys() - _RECORD_FIELDS:
            if not key.startswith("_"):
                record.__dict__[key] = self._clean_value(record.__dict__[key], MAX_DEPTH)
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            record.exc_text = self._bound_traceback(redact(text))
            record.__dict__.setdefault("error_type", record.exc_info[0].__name__)
            record.__dict__["exception"] = record.exc_text
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self._bound_traceback(redact(record.exc_text))
        if record.stack_info:
            record.stack_info = self._bound_traceback(redact(record.stack_info))

    def _name_messages(self, args: Any) -> Any:
        if isinstance(args, tuple):
            return tuple(_NamedMessage(arg) if isinstance(arg, Message | MessageProxy) else arg for arg in args)
        if isinstance(args, dict):
            return {
                key: _NamedMessage(value) if isinstance(value, Message | MessageProxy) else value
                for key, value in args.items()
            }
        return args

    def _clean_value(self, value: Any, depth: int) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if depth > 0 and isinstance(value, dict):
            items = list(value.items())
            cleaned = {str(key): self._clean_value(item, depth - 1) for key, item in items[:MAX_ITEMS]}
            if len(items) > MAX_ITEMS:
                cleaned["..."] = f"{len(items) - MAX_ITEMS} more items"
            return cleaned
        if depth > 0 and isinstance(value, list | tuple | set | frozenset):
            sequence = list(value)
            cleaned_items = [self._clean_value(item, depth - 1) for item in sequence[:MAX_ITEMS]]
            if len(sequence) > MAX_ITEMS:
                cleaned_items.append(f"... {len(sequence) - MAX_ITEMS} more items")
            return cleaned_items
        if isinstance(value, Message | MessageProxy) and not self._log_arguments:
            value = _NamedMessage(value)
        return bound(redact(value if isinstance(value, str) else str(value)), self._max_field)

    def _bound_traceback(self, text: str) -> str:
        if len(text) <= self._max_exception:
            return text
        head = self._max_exception // 4
        tail = self._max_exception - head
        return f"{text[:head]}\n... [{len(text) - head - tail} characters cut] ...\n{text[-tail:]}"
