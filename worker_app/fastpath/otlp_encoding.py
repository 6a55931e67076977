"""OTLP/protobuf encoding of finished spans, written out by hand, and its installation in the exporter.

Reference behaviour: the SDK's `opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`
(`encode_spans(spans).SerializePartialToString()`): the same bytes' meaning, at a fraction of its
cost.

Why: the span export thread runs in the worker process and holds the GIL while it encodes, so every
microsecond it spends per span is taken from the jobs. The SDK builds a tree of protobuf message
objects per batch (one Python-to-C call per field) and then serialises it; here each span goes
straight to wire format, and what repeats from span to span (the resource, the instrumentation
scope, attribute keys) is encoded once. `tests/worker/test_otlp_encoding.py` checks the result
decodes to exactly what the SDK's encoder produces, field by field, for every kind of value.

Anything this encoder does not expect (a value type the SDK would reject, a string that is not valid
UTF-8, an integer out of int64 range) makes it hand the batch's spans to the SDK's encoder, which
has the reference behaviour for those cases (log and skip the attribute).

Spans can also be encoded one by one as they end (`span_encoder`), in the thread that ended them,
and queued as `EncodedSpan`s: a batch of those is then only joined. The span is encoded while its
memory is still in the CPU's caches, and freed right away by the thread that made it, where a queued
span would wait (with its attribute dict and context) for the export thread to free it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_instrumentation_scope,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from .light_span import LightSpan

_KIND = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
#: By the members' identity: a SpanKind hashes in Python (enum.__hash__), once per span.
_KIND_BY_ID = {id(kind): encoded for kind, encoded in _KIND.items()}
_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
# Span.flags (field 16, fixed32): SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, plus IS_REMOTE for a remote parent.
_FLAGS_LOCAL = b"\x85\x01" + struct.pack("<I", 0x100)
_FLAGS_REMOTE = b"\x85\x01" + struct.pack("<I", 0x300)
# Link.flags (field 6, fixed32).
_LINK_FLAGS_LOCAL = b"\x35" + struct.pack("<I", 0x100)
_LINK_FLAGS_REMOTE = b"\x35" + struct.pack("<I", 0x300)
_EMPTY_STATUS = b"\x7a\x00"
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_CACHE_LIMIT = 1024


class _Unsupported(Exception):
    """A value only the SDK's encoder knows how to treat."""


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    size = len(payload)
    return tag + (bytes((size,)) if size < 0x80 else _varint(size)) + payload


def _text(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _Unsupported from error


_key_cache: dict[str, bytes] = {}


def _key(key: str) -> bytes:
    """KeyValue.key (field 1), cached: the same keys come back on every span."""
    encoded = _key_cache.get(key)
    if encoded is None:
        encoded = _field(b"\x0a", _text(key))
        if len(_key_cache) < _CACHE_LIMIT:
            _key_cache[key] = encoded
    return encoded


def _any_value(value: Any) -> bytes:  # noqa: PLR0911 - one return per protobuf value kind
    """The contents of an AnyValue message (oneof members are written even when zero)."""
    if value is None:
        return b""
    if value is True:
        return b"\x10\x01"
    if value is False:
        return b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", _text(value))
    if isinstance(value, bool):  # a bool subclass
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Unsupported
        return b"\x18" + _varint(value if value >= 0 else value + 2**64)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(item)) for item in value]))
    if isinstance(value, Mapping):
        return _field(
            b"\x32",
            b"".join(
                [_field(b"\x0a", _key(str(key)) + _field(b"\x12", _any_value(item))) for key, item in value.items()]
            ),
        )
    raise _Unsupported


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    return b"".join([_field(tag, _key(key) + _field(b"\x12", _any_value(value))) for key, value in attributes.items()])


#: Span attributes (field 9) already encoded, per key and value; a key that shows more distinct values
#: than this (a message id) is not cached any more (None).
_SPAN_ATTRIBUTE_VALUES = 64
#: key -> {value: (value's class, encoded attribute)}; the class tells 1 from True apart.
_span_attribute_cache: dict[str, dict[Any, tuple[type, bytes]] | None] = {}
# Not float: -0.0 == 0.0 (and NaN != NaN) would make a cache lookup find the wrong bytes or none.
_CACHEABLE = frozenset((str, bool, int))


def _span_attributes(attributes: Mapping[str, Any]) -> bytes:
    out = []
    for key, value in attributes.items():
        cls = value.__class__
        values = _span_attribute_cache.get(key, _NOT_SEEN)
        if values is not None and cls in _CACHEABLE:
            hit = values.get(value)
            if hit is not None and hit[0] is cls:
                out.append(hit[1])
                continue
            encoded = _field(b"\x4a", _key(key) + _field(b"\x12", _any_value(value)))
            if values is _NOT_SEEN:
                if len(_span_attribute_cache) >= _CACHE_LIMIT:
                    out.append(encoded)
                    continue
                values = _span_attribute_cache[key] = {}
            if len(values) >= _SPAN_ATTRIBUTE_VALUES:
                _span_attribute_cache[key] = None
            elif hit is None:
                values[value] = (cls, encoded)
            out.append(encoded)
        else:
            out.append(_field(b"\x4a", _key(key) + _field(b"\x12", _any_value(value))))
    return b"".join(out)


_NOT_SEEN: Any = {}
_ID_PAIR = struct.Struct(">2sQQ2sQ").pack  # Span.trace_id (field 1) and span_id (field 2)
_PARENT_ID = struct.Struct(">2sQ").pack  # Span.parent_span_id (field 4)
_TIMES = struct.Struct("<BQBQ").pack  # Span.start_time_unix_nano (field 7) and end_time_unix_nano (field 8)
_LOW64 = 2**64 - 1
_UNSET = StatusCode.UNSET
_name_cache: dict[str, bytes] = {}


def _name(name: str) -> bytes:
    """Span.name (field 5), cached: a process's spans have few names."""
    encoded = _name_cache.get(name)
    if encoded is None:
        encoded = _field(b"\x2a", _text(name)) if name else b""
        if len(_name_cache) < _CACHE_LIMIT:
            _name_cache[name] = encoded
    return encoded


def _span(span: ReadableSpan) -> bytes:
    """ScopeSpans.spans (field 2) holding one span."""
    if span.__class__ is not ReadableSpan and span.__class__ is not LightSpan:
        raise _Unsupported  # a subclass may compute any field: the SDK's encoder reads those
    # What the SDK (and a light span) hands to processors: read its fields, not its properties.
    context: Any = span._context
    parent: Any = span._parent
    attributes: Any = span._attributes
    events: Any = span._events
    links: Any = span._links
    start, end = span._start_time, span._end_time
    trace_id = context.trace_id
    parts = [_ID_PAIR(b"\x0a\x10", trace_id >> 64, trace_id & _LOW64, b"\x12\x08", context.span_id)]
    trace_state = context.trace_state
    if trace_state:
        parts.append(_field(b"\x1a", _text(",".join([f"{key}={value}" for key, value in trace_state.items()]))))
    if parent:
        parts.append(_PARENT_ID(b"\x22\x08", parent.span_id))
    parts.append(_name(span._name))
    kind = _KIND_BY_ID.get(id(span._kind))
    if kind is None:
        raise _Unsupported
    parts.append(kind)
    if start and end:
        parts.append(_TIMES(0x39, start, 0x41, end))
    else:
        parts.append((b"\x39" + _FIXED64(start) if start else b"") + (b"\x41" + _FIXED64(end) if end else b""))
    if attributes:
        # The SDK's BoundedAttributes keeps a plain dict: reading it skips a Python-level mapping layer.
        # (A ReadableSpan built by hand may hold any mapping: read that one as it is.)
        parts.append(
            _span_attributes(attributes if attributes.__class__ is dict else getattr(attributes, "_dict", attributes))
        )
    if getattr(attributes, "dropped", 0):
        parts.append(b"\x50" + _varint(attributes.dropped))
    if events:  # (iterating the SDK's BoundedList copies it under a lock: only when there is something)
        parts.extend([_event(event) for event in events])
    if getattr(events, "dropped", 0):
        parts.append(b"\x60" + _varint(events.dropped))
    if links:
        parts.extend([_link(link) for link in links])
    if getattr(links, "dropped", 0):
        parts.append(b"\x70" + _varint(links.dropped))
    parts.append(_status(span._status))
    parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return _field(b"\x12", b"".join(parts))


def _status(status: Any) -> bytes:
    """Span.status (field 15)."""
    if status is None:
        return b""
    code = status.status_code
    description = status.description
    if code is _UNSET and not description:
        return _EMPTY_STATUS
    payload = _field(b"\x12", _text(description)) if description else b""
    if code.value:
        payload += b"\x18" + _varint(code.value)
    return _field(b"\x7a", payload)


def _event(event: Any) -> bytes:
    """Span.events (field 11)."""
    payload = b"\x09" + _FIXED64(event.timestamp) if event.timestamp else b""
    if event.name:
        payload += _field(b"\x12", _text(event.name))
    payload += _attributes(b"\x1a", event.attributes)
    if event.dropped_attributes:
        payload += b"\x20" + _varint(event.dropped_attributes)
    return _field(b"\x5a", payload)


def _link(link: Any) -> bytes:
    """Span.links (field 13)."""
    linked = link.context
    payload = b"\x0a\x10" + linked.trace_id.to_bytes(16, "big") + b"\x12\x08" + linked.span_id.to_bytes(8, "big")
    payload += _attributes(b"\x22", link.attributes)
    if link.dropped_attributes:
        payload += b"\x28" + _varint(link.dropped_attributes)
    payload += _LINK_FLAGS_REMOTE if linked.is_remote else _LINK_FLAGS_LOCAL
    return _field(b"\x6a", payload)


class EncodedSpan:
    """A finished span in wire format (`ScopeSpans.spans`), with what the batch encoder groups it by.

    What `span_encoder` hands to the batch processor in place of the span: `context` is the span's
    (the processor reads its sampled flag), `resource` and `instrumentation_scope` are the span's.
    """

    __slots__ = ("context", "data", "instrumentation_scope", "resource")

    def __init__(self, span: ReadableSpan, data: bytes) -> None:
        self.context = span.context
        self.resource = span.resource
        self.instrumentation_scope = span.instrumentation_scope
        self.data = data


def encode_span(span: ReadableSpan) -> ReadableSpan | EncodedSpan:
    """`span` in wire format, or `span` itself where only the SDK's encoder knows what to do with it."""
    try:
        return EncodedSpan(span, _span(span))
    except Exception:  # never in the caller's `end()`: the export thread meets it, as before
        return span


# Resources and scopes are shared by every span of a provider and a tracer: encode each once.
_resource_cache: dict[int, tuple[Any, bytes]] = {}
_scope_cache: dict[int, tuple[Any, bytes]] = {}


def _encoded(cache: dict[int, tuple[Any, bytes]], item: Any, encode: Any) -> bytes:
    found = cache.get(id(item))
    if found is not None and found[0] is item:
        return found[1]
    encoded: bytes = encode(item)
    if len(cache) < _CACHE_LIMIT:
        cache[id(item)] = (item, encoded)  # holds the object, so its id is not reused
    return encoded


def _resource_bytes(resource: Any) -> bytes:
    return _field(b"\x0a", _encode_resource(resource).SerializePartialToString())


def _scope_bytes(scope: Any) -> bytes:
    return _field(b"\x0a", _encode_instrumentation_scope(scope).SerializePartialToString())


def encode_spans_to_bytes(spans: Sequence[ReadableSpan | EncodedSpan]) -> bytes:
    """An `ExportTraceServiceRequest` holding `spans`, serialised."""
    try:
        return _encode(spans)
    except _Unsupported:
        encoded = [span for span in spans if isinstance(span, EncodedSpan)]
        others = [span for span in spans if not isinstance(span, EncodedSpan)]
        # Two requests written one after the other are one request holding the resource spans of
        # both: protobuf merges a repeated field by concatenation.
        return (_encode(encoded) if encoded else b"") + bytes(encode_spans(others).SerializePartialToString())


def _encode(spans: Sequence[ReadableSpan | EncodedSpan]) -> bytes:
    # Group by resource and scope as the SDK does (equal resources together), hashing each distinct
    # object once: Resource.__hash__ serialises all its attributes to JSON.
    by_identity: dict[tuple[int, int], tuple[Any, Any, list[bytes]]] = {}
    last_resource = last_scope = current = None
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        if resource is not last_resource or scope is not last_scope or current is None:
            group = by_identity.get((id(resource), id(scope)))
            if group is None:
                group = by_identity[(id(resource), id(scope))] = (resource, scope, [])
            last_resource, last_scope, current = resource, scope, group[2]
        current.append(span.data if span.__class__ is EncodedSpan else _span(span))  # type: ignore[arg-type]
    grouped: dict[Any, dict[Any, list[bytes]]] = {}
    for resource, scope, encoded in by_identity.values():
        by_scope = grouped.setdefault(resource, {})
        by_scope.setdefault(scope, []).extend(encoded)
    request = []
    for resource, by_scope in grouped.items():
        payload = [_encoded(_resource_cache, resource, _resource_bytes)]
        for scope, encoded_spans in by_scope.items():
            scope_payload = _encoded(_scope_cache, scope, _scope_bytes) + b"".join(encoded_spans)
            if scope is not None and scope.schema_url:
                scope_payload += _field(b"\x1a", _text(scope.schema_url))
            payload.append(_field(b"\x12", scope_payload))
        if resource.schema_url:
            payload.append(_field(b"\x1a", _text(resource.schema_url)))
        request.append(_field(b"\x0a", b"".join(payload)))
    return b"".join(request)


class _Encoded:
    """What the OTLP/HTTP exporter expects back from `encode_spans`: something to serialise."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def SerializePartialToString(self) -> bytes:
        return self._data


def _fast_encode_spans(spans: Sequence[ReadableSpan | EncodedSpan]) -> Any:
    return _Encoded(encode_spans_to_bytes(spans))


def use_fast_otlp_encoding() -> bool:
    """Make the OTLP/HTTP span exporter encode with `encode_spans_to_bytes` (the same request).

    The exporter module calls `encode_spans(spans).SerializePartialToString()`; that name is replaced
    only while it still is the SDK's own function, so an SDK that changed how it encodes keeps its
    own (slower, equally correct) path. Returns whether the fast encoder is in place.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http import trace_exporter  # noqa: PLC0415
    except ImportError:
        return False
    current = getattr(trace_exporter, "encode_spans", None)
    if current is _fast_encode_spans:
        return True
    if current is not encode_spans:
        return False
    trace_exporter.encode_spans = _fast_encode_spans  # type: ignore[attr-defined,assignment]
    return True


def span_encoder(exporter: object) -> Callable[[ReadableSpan], ReadableSpan | EncodedSpan] | None:
    """`encode_span` when `exporter` sends what it is given with `encode_spans_to_bytes`, else None.

    That is the SDK's own OTLP/HTTP span exporter (not a subclass: one may read the spans it is given)
    while `use_fast_otlp_encoding` is in place; any other exporter needs the spans themselves.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http import trace_exporter  # noqa: PLC0415
    except ImportError:
        return None
    if (
        type(exporter) is trace_exporter.OTLPSpanExporter
        and getattr(trace_exporter, "encode_spans", None) is _fast_encode_spans
    ):
        return encode_span
    return None
