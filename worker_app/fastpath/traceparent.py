"""The W3C `traceparent` read and written directly, for the common carrier.

Reference behaviour: `opentelemetry.propagate.inject` and `opentelemetry.propagate.extract` with the
default propagators (W3C trace context + baggage: `OTEL_PROPAGATORS` unset or
`tracecontext,baggage`). When those are the global propagators, a carrier that is exactly one
well-formed `traceparent` (no `tracestate`, no baggage) is read and written here, exactly as the
propagators would; everything else is left to them (`observability.propagation` decides).
`tests/worker/test_fast_paths.py` compares both ways on valid, invalid and unusual carriers.
"""

from __future__ import annotations

import re

from opentelemetry import propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: The carrier key of the W3C trace context.
TRACEPARENT = "traceparent"

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
_default_textmap: dict[int, bool] = {}
#: The flags nearly every carrier has (sampled or not), parsed once.
_COMMON_FLAGS = {"01": TraceFlags(1), "00": TraceFlags(0)}


def is_default_textmap() -> bool:
    """The global propagators are exactly W3C trace context + baggage (cached per propagator object)."""
    textmap = propagate.get_global_textmap()
    known = _default_textmap.get(id(textmap))
    if known is None:
        kinds = [type(propagator) for propagator in getattr(textmap, "_propagators", ())]
        known = type(textmap) is CompositePropagator and kinds == [TraceContextTextMapPropagator, W3CBaggagePropagator]
        _default_textmap.clear()
        _default_textmap[id(textmap)] = known
    return known


def format_traceparent(span_context: SpanContext) -> str:
    """The `traceparent` header value of a span context (version 00)."""
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def parse_carrier(carrier: object) -> SpanContext | None:
    """The remote span context of a carrier holding only a well-formed `traceparent`, else None.

    None means "ask the propagators": the carrier has more keys, or the header is not one the
    fast path is sure about.
    """
    if not (isinstance(carrier, dict) and len(carrier) == 1):
        return None
    header = carrier.get(TRACEPARENT)
    match = _TRACEPARENT.fullmatch(header) if isinstance(header, str) else None
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    trace_flags = _COMMON_FLAGS.get(flags)
    if trace_flags is None:
        trace_flags = TraceFlags(int(flags, 16))
    return SpanContext(int(trace_id, 16), int(span_id, 16), True, trace_flags)


def parse_traceparent(value: object) -> SpanContext | None:
    """A remote span context from a `traceparent` value written by `format_traceparent`, else None
    (lenient on case, as a link to a previous attempt does not need the propagators' strictness)."""
    if not isinstance(value, str):
        return None
    parts = value.split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
