"""Decoding a fetched message on its own, so that one bad message never holds back the others.

Dramatiq's `_RedisConsumer` decodes a whole fetched batch in `__next__`, and one message it cannot
decode raises out of it: the good messages fetched in the same batch then stay in the ack set of a
live worker. `LosslessRedisConsumer` (`redis_consumer.py`) decodes each message with
`decode_message` instead, and dead-letters the ones it refuses with the reason given here. The
reasons are bounded (`bounded`), since they are stored with the dead letter and logged: a message
is untrusted input and may be megabytes long.

Example::

    message, reason, actor_label = decode_message(data, "default")
    if message is None:
        broker.bury("default", redis_id, reason)   # reason: e.g. "missing message field(s): args"
"""

from __future__ import annotations

import json
from typing import Any

from dramatiq.encoder import JSONEncoder
from dramatiq.message import Message, get_encoder

#: `actor` label of dead letters that could not be decoded at all.
UNDECODABLE_ACTOR = "(undecodable)"
#: `actor` label of dead letters naming an actor this worker does not declare (kept bounded: the
#: name itself is in the log line).
UNKNOWN_ACTOR = "(unknown)"

#: The fields of a Dramatiq message and their types, all required and no others allowed.
_MESSAGE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "queue_name": str,
    "actor_name": str,
    "args": (list, tuple),
    "kwargs": dict,
    "options": dict,
    "message_id": str,
    "message_timestamp": int,
}


def decode_message(data: bytes, queue_name: str) -> tuple[Message[Any] | None, str, str]:
    """The message in `data`, or (None, reason, actor label) when it cannot be delivered.

    `queue_name` is the queue it was fetched from: a message naming another queue would be acked on
    the wrong ack set by Dramatiq's worker, so it is refused too.
    """
    encoder = get_encoder()
    try:
        # JSON is decoded here rather than by the encoder, whose error message is a repr of all
        # the data (tens of megabytes for a large message).
        fields = json.loads(data.decode("utf-8")) if isinstance(encoder, JSONEncoder) else encoder.decode(data)
    except Exception as error:
        return None, f"not decodable ({type(error).__name__})", UNDECODABLE_ACTOR
    problem = _message_problem(fields, queue_name)
    if problem:
        return None, problem, UNDECODABLE_ACTOR
    try:
        return Message(**fields), "", ""
    except Exception as error:
        return None, f"not a message ({type(error).__name__})", UNDECODABLE_ACTOR


def _message_problem(fields: object, queue_name: str) -> str:
    if not isinstance(fields, dict):
        return f"not a JSON object (a {type(fields).__name__})"
    missing = [name for name in _MESSAGE_FIELDS if name not in fields]
    if missing:
        return f"missing message field(s): {', '.join(missing)}"
    unknown = sorted(str(name) for name in fields if name not in _MESSAGE_FIELDS)
    if unknown:
        return f"unknown message field(s): {bounded(', '.join(unknown), 120)}"
    for name, expected in _MESSAGE_FIELDS.items():
        value = fields[name]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            return f"field {name}: wrong type {type(value).__name__}"
    if fields["queue_name"] != queue_name:
        return f"names queue {bounded(fields['queue_name'], 80)!r}, fetched from {queue_name!r}"
    return ""


def bounded(text: str, limit: int) -> str:
    """`text` for a log line or a reason: escaped if not printable, cut to `limit` characters."""
    text = json.dumps(text)[1:-1] if not text.isprintable() else text
    return text if len(text) <= limit else text[: limit - 3] + "..."
