"""Trace context in messages: written once into `message.options`, read back by the consumer.

The carrier is the W3C trace context and baggage of the global propagators, in
`message.options[CONTEXT_OPTION]`. With the default propagators the common carrier is a single
`traceparent`, read and written by `fastpath.traceparent` exactly as the propagators would;
anything else goes through `opentelemetry.propagate`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan

from ..fastpath.traceparent import TRACEPARENT, format_traceparent, is_default_textmap, parse_carrier

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext

logger = logging.getLogger("worker_app.tracing")  # its name from before the split: log queries select on it

#: Message option holding the W3C carrier of the context the message was created in.
CONTEXT_OPTION = "otel_context"
#: Message option holding the `traceparent` of the delivery that failed before this one.
PREVIOUS_ATTEMPT_OPTION = "otel_previous_attempt"


def inject(span: Span) -> dict[str, str]:
    """The W3C carrier of `span` in the current context (its baggage included)."""
    span_context = span.get_span_context()
    # The baggage of the current context is that of the context with `span` in it (only the span
    # differs), so that context is built only for the propagators.
    if span_context.is_valid and not span_context.trace_state and not baggage.get_all() and is_default_textmap():
        return {TRACEPARENT: format_traceparent(span_context)}
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def extract(carrier: object) -> Context:
    """The context a carrier was injected in; an empty context for a malformed carrier."""
    return extract_parent(carrier)[0]


def extract_parent(carrier: object) -> tuple[Context, SpanContext | None]:
    """`extract(carrier)`, and the span context of the remote span in it (None: no valid one)."""
    if is_default_textmap():
        remote = parse_carrier(carrier)
        if remote is not None:
            return trace.set_span_in_context(NonRecordingSpan(remote), Context()), remote
    try:
        context = propagate.extract(carrier)
    except (TypeError, AttributeError, ValueError):
        # A message whose carrier is not a map of strings (a foreign or hand-made producer): the
        # propagators raise on it; process the message as the start of a new trace instead.
        logger.debug("Ignoring a malformed trace context carrier: %r", carrier)
        return Context(), None
    span_context = trace.get_current_span(context).get_span_context()
    return context, span_context if span_context.is_valid else None
