"""OpenTelemetry tracing for Dramatiq: a PRODUCER span per send, a CONSUMER span per delivery.

Conventions (OpenTelemetry messaging semantic conventions; names in `conventions`):

- `send <queue>` (PRODUCER) wraps the first enqueue of a message; its W3C trace context and baggage
  are injected into `message.options["otel_context"]`, once. Re-enqueues (retries, delayed messages
  moved to their queue, requeues on shutdown) never overwrite it, so every delivery of a message
  belongs to the trace that created it.
- `process <queue>` (CONSUMER) is current while the actor runs. Its parent is the creation context
  (parent/child is allowed for single-message operations); a retried delivery also carries a link
  to the failed attempt (`message.options["otel_previous_attempt"]`).
- Status ERROR with `error.type` only when a delivery fails for good (dead-lettered, or its error is
  not retried). A failure that is retried records the exception but leaves the status unset;
  `Retry`, `SkipMessage` and the actor's `non_error_exceptions` are never errors.
- Actor arguments are not recorded unless asked (`record_arguments`): they may hold personal or
  secret data.

The consumer side is a `delivery.DeliveryObserver`: `DeliveryTracker` starts and finishes the span
with the delivery's record, and the outcome is the one it decided.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from dramatiq import Middleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from ..config.queues import canonical_queue
from ..fastpath.light_span import LightSpan, SpanStarter
from ..fastpath.traceparent import format_traceparent, parse_traceparent
from .conventions import (
    ACTOR_NAME,
    ERROR_TYPE,
    INSTRUMENTATION_NAME,
    INSTRUMENTATION_VERSION,
    LINK_TYPE,
    LINK_TYPE_PREVIOUS_ATTEMPT,
    MESSAGE_ARGUMENTS,
    MESSAGE_DEAD_LETTERED,
    MESSAGE_DELAY_MS,
    MESSAGE_OUTCOME,
    MESSAGE_RETRIES,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    MESSAGING_SYSTEM_DRAMATIQ,
    SCHEMA_URL,
)
from .outcomes import NON_ERROR_EXCEPTIONS_OPTION
from .propagation import CONTEXT_OPTION, PREVIOUS_ATTEMPT_OPTION, extract_parent, inject
from .telemetry import SdkConfig, configure_tracing, shutdown_tracing

if TYPE_CHECKING:
    from contextvars import Token

    from dramatiq import Broker, Message, Worker
    from dramatiq.broker import MessageProxy
    from opentelemetry.context import Context
    from opentelemetry.trace import Span
    from opentelemetry.trace import TracerProvider as ApiTracerProvider

    from .delivery import Delivery

__all__ = ["CONTEXT_OPTION", "PREVIOUS_ATTEMPT_OPTION", "OpenTelemetryMiddleware"]

_ARGUMENTS_LIMIT = 2048
_STATUS_LIMIT = 256


#: A delivery's consumer span and the token of the context it is current in.
_ConsumerSpan = tuple["Span", "Token[Context]"]


class OpenTelemetryMiddleware(Middleware):
    """Traces sends (a middleware) and deliveries (an observer of `DeliveryTracker`).

    As a middleware it starts a PRODUCER span around the first enqueue of each message and injects
    its context into the message; with `sdk` it also configures the OpenTelemetry SDK in each worker
    process after Dramatiq starts it, and flushes it at shutdown. As a `DeliveryObserver` it starts
    the CONSUMER span of each delivery (current while the actor runs, its context recorded in the
    delivery) and ends it with the outcome the tracker decided. See the module documentation for the
    conventions.

    :param tracer_provider: the provider of the spans (tests give their own); default: the global one.
    :param record_arguments: record actor arguments as `dramatiq.message.arguments` (they may hold
      personal data: `WORKER_TRACE_ARGUMENTS`).
    :param sdk: configure the SDK from `OTEL_*` with this at process boot, and flush it within its
      bound at worker shutdown; None (the default, and always with a `tracer_provider`) leaves the SDK
      to whoever configured it.
    :param light_spans: start the producer and consumer spans as `fastpath.light_span` light spans
      where that exports the same (default); False: always the SDK's own spans (needed for the SDK's
      internal span metrics, `OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED`).

    Example::

        tracing = OpenTelemetryMiddleware(sdk=SdkConfig(service_name="worker", disabled=False, flush_timeout=5))
        deliveries = DeliveryTracker(observers=[tracing])
        broker = RedisBroker(middleware=[deliveries, tracing, Retries()])
    """

    def __init__(
        self,
        *,
        tracer_provider: ApiTracerProvider | None = None,
        record_arguments: bool = False,
        sdk: SdkConfig | None = None,
        light_spans: bool = True,
    ) -> None:
        self._spans = SpanStarter(
            name=INSTRUMENTATION_NAME,
            version=INSTRUMENTATION_VERSION,
            schema_url=SCHEMA_URL,
            tracer_provider=tracer_provider,
            light=light_spans,
        )
        self._record_arguments = record_arguments
        self._sdk = sdk if tracer_provider is None else None
        self._local = threading.local()

    @property
    def actor_options(self) -> set[str]:
        return {NON_ERROR_EXCEPTIONS_OPTION}

    # -- lifecycle -------------------------------------------------------------------------------

    def after_process_boot(self, broker: Broker) -> None:
        if self._sdk is not None:
            configure_tracing(self._sdk)

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if self._sdk is not None:
            shutdown_tracing(self._sdk.flush_timeout)

    # -- producer ----------------------------------------------------------------------------------

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        options = message.options
        if CONTEXT_OPTION in options:
            return  # a re-enqueue: the creation context stays as it is
        pending = self._pending_sends()
        if pending:
            # Sends run before/after hooks back to back in one thread, so a span still pending here
            # belongs to an enqueue that raised before `after_enqueue`.
            for stale in pending.values():
                stale.set_status(Status(StatusCode.ERROR, "enqueue did not complete"))
                stale.end()
            pending.clear()

        queue = canonical_queue(message.queue_name)
        attributes: dict[str, Any] = {
            MESSAGING_SYSTEM: MESSAGING_SYSTEM_DRAMATIQ,
            MESSAGING_OPERATION_TYPE: "send",
            MESSAGING_OPERATION_NAME: "send",
            MESSAGING_DESTINATION_NAME: queue,
            MESSAGING_MESSAGE_ID: message.message_id,
            ACTOR_NAME: message.actor_name,
        }
        if delay:
            attributes[MESSAGE_DELAY_MS] = delay
        if self._record_arguments:
            attributes[MESSAGE_ARGUMENTS] = _arguments_text(message)
        span = self._spans.start_span(f"send {queue}", context=None, kind=SpanKind.PRODUCER, attributes=attributes)
        options[CONTEXT_OPTION] = inject(span)
        pending[message.message_id] = span

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        span = self._pending_sends().pop(message.message_id, None)
        if span is not None:
            span.end()

    # -- consumer (DeliveryObserver) ---------------------------------------------------------------

    def delivery_started(self, delivery: Delivery) -> _ConsumerSpan:
        message = delivery.message
        options = message.options
        carrier = options.get(CONTEXT_OPTION)
        parent, parent_span_context = extract_parent(carrier) if carrier else (None, None)
        links = None
        previous = parse_traceparent(options.get(PREVIOUS_ATTEMPT_OPTION))
        if previous is not None:
            links = [Link(previous, {LINK_TYPE: LINK_TYPE_PREVIOUS_ATTEMPT})]
        attributes: dict[str, Any] = {
            MESSAGING_SYSTEM: MESSAGING_SYSTEM_DRAMATIQ,
            MESSAGING_OPERATION_TYPE: "process",
            MESSAGING_OPERATION_NAME: "process",
            MESSAGING_DESTINATION_NAME: delivery.queue,
            MESSAGING_MESSAGE_ID: delivery.message_id,
            ACTOR_NAME: delivery.actor,
            MESSAGE_RETRIES: options.get("retries", 0),
        }
        if self._record_arguments:
            attributes[MESSAGE_ARGUMENTS] = _arguments_text(message)
        span = self._spans.start_span(
            f"process {delivery.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            parent=parent_span_context,
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        delivery.span_context = span.get_span_context()
        return span, token

    def delivery_retried(self, delivery: Delivery, state: _ConsumerSpan, message: Message[Any], *, first: bool) -> None:
        # Point the next attempt at this one (only messages that carry a creation context: one that
        # does not gets it, and a send span, from `before_enqueue` right after this).
        if CONTEXT_OPTION in message.options:
            message.options[PREVIOUS_ATTEMPT_OPTION] = format_traceparent(state[0].get_span_context())

    def delivery_finished(self, delivery: Delivery, state: _ConsumerSpan) -> None:
        span, token = state
        outcome = delivery.outcome
        exception = delivery.exception
        try:
            if outcome is not None and span.is_recording():
                if outcome.error and exception is not None:
                    span.record_exception(exception)
                ended: dict[str, str | bool] = {MESSAGE_DEAD_LETTERED: True} if delivery.message.failed else {}
                ended[MESSAGE_OUTCOME] = outcome.outcome
                final_error = exception if outcome.final_error else None
                if final_error is not None:
                    ended[ERROR_TYPE] = _qualified_name(type(final_error))
                if type(span) is LightSpan:
                    span.set_known_attributes(ended)  # plain values: nothing for the SDK to clean
                else:
                    span.set_attributes(ended)
                if final_error is not None:
                    span.set_status(Status(StatusCode.ERROR, _status_description(final_error)))
        finally:
            span.end()
            otel_context.detach(token)

    def delivery_abandoned(self, delivery: Delivery, state: _ConsumerSpan) -> None:
        span, token = state
        span.end()
        otel_context.detach(token)

    # -- helpers -----------------------------------------------------------------------------------

    def _pending_sends(self) -> dict[str, Span]:
        pending: dict[str, Span] | None = getattr(self._local, "pending_sends", None)
        if pending is None:
            pending = self._local.pending_sends = {}
        return pending


def _qualified_name(cls: type[BaseException]) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _status_description(exception: BaseException) -> str:
    text = f"{type(exception).__name__}: {exception}"
    return text if len(text) <= _STATUS_LIMIT else text[: _STATUS_LIMIT - 3] + "..."


def _arguments_text(message: Message[Any] | MessageProxy) -> str:
    text = json.dumps({"args": list(message.args), "kwargs": message.kwargs}, default=repr, sort_keys=True)
    return text if len(text) <= _ARGUMENTS_LIMIT else text[: _ARGUMENTS_LIMIT - 3] + "..."
