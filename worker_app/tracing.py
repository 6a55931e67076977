"""OpenTelemetry tracing for Dramatiq: a PRODUCER span per send, a CONSUMER span per delivery.

Conventions (OpenTelemetry messaging semantic conventions):

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
- Actor arguments are not recorded unless `WORKER_TRACE_ARGUMENTS=true`: they may hold personal or
  secret data.

Spans are tracked per delivery in the worker thread that runs it, never by message id, since a
retry is the same message id delivered again.

This middleware must come before Dramatiq's `Retries` in the middleware list (`build_broker` puts
it first): after-hooks run in reverse order, so it then sees whether `Retries` failed the message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from typing import TYPE_CHECKING, Any

from dramatiq import Middleware
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import __version__
from .outcomes import NON_ERROR_EXCEPTIONS_OPTION, SKIPPED, classify
from .queues import canonical_queue
from .settings import load_settings
from .telemetry import configure_tracing, shutdown_tracing

if TYPE_CHECKING:
    from contextvars import Token

    from dramatiq import Broker, Message, Worker
    from dramatiq.broker import MessageProxy
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span
    from opentelemetry.trace import TracerProvider as ApiTracerProvider

logger = logging.getLogger(__name__)

#: Message option holding the W3C carrier of the context the message was created in.
CONTEXT_OPTION = "otel_context"
#: Message option holding the `traceparent` of the delivery that failed before this one.
PREVIOUS_ATTEMPT_OPTION = "otel_previous_attempt"

_ARGUMENTS_LIMIT = 2048
_STATUS_LIMIT = 256


@dataclasses.dataclass(slots=True)
class _Delivery:
    message_id: str
    span: Span
    token: Token[Context]
    retried: bool = False


class OpenTelemetryMiddleware(Middleware):
    """Traces sends and deliveries. See the module documentation for the conventions."""

    def __init__(
        self,
        *,
        tracer_provider: ApiTracerProvider | None = None,
        record_arguments: bool | None = None,
        configure_sdk: bool = True,
    ) -> None:
        """`tracer_provider`: use this provider (tests) instead of the global one.
        `record_arguments`: record actor arguments (default: `WORKER_TRACE_ARGUMENTS`).
        `configure_sdk`: configure the SDK from `OTEL_*` in each worker process at boot and flush it
        at shutdown (ignored when a provider is given).
        """
        self._tracer = trace.get_tracer(
            "worker_app.tracing",
            __version__,
            tracer_provider=tracer_provider,
            schema_url="https://opentelemetry.io/schemas/1.27.0",
        )
        self._record_arguments = record_arguments
        self._manage_sdk = configure_sdk and tracer_provider is None
        self._local = threading.local()

    @property
    def actor_options(self) -> set[str]:
        return {NON_ERROR_EXCEPTIONS_OPTION}

    # -- lifecycle -------------------------------------------------------------------------------

    def after_process_boot(self, broker: Broker) -> None:
        if self._manage_sdk:
            configure_tracing(load_settings())

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if self._manage_sdk:
            shutdown_tracing(load_settings().telemetry_flush_timeout)

    # -- producer ----------------------------------------------------------------------------------

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        options = message.options
        if CONTEXT_OPTION in options:
            # A re-enqueue. From inside the delivery of the same message it is a retry: point the next
            # attempt at this one. The creation context stays as it is.
            delivery: _Delivery | None = getattr(self._local, "delivery", None)
            if delivery is not None and delivery.message_id == message.message_id:
                delivery.retried = True
                options[PREVIOUS_ATTEMPT_OPTION] = _traceparent(delivery.span.get_span_context())
            return

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
            "messaging.system": "dramatiq",
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": queue,
            "messaging.message.id": message.message_id,
            "dramatiq.actor.name": message.actor_name,
        }
        if delay:
            attributes["dramatiq.message.delay_ms"] = delay
        if self._should_record_arguments():
            attributes["dramatiq.message.arguments"] = _arguments_text(message)
        span = self._tracer.start_span(f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes)
        options[CONTEXT_OPTION] = _inject(span)
        pending[message.message_id] = span

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        span = self._pending_sends().pop(message.message_id, None)
        if span is not None:
            span.end()

    # -- consumer ----------------------------------------------------------------------------------

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        options = message.options
        carrier = options.get(CONTEXT_OPTION)
        parent = _extract(carrier) if carrier else None
        links = None
        previous = _span_context_from_traceparent(options.get(PREVIOUS_ATTEMPT_OPTION))
        if previous is not None:
            links = [Link(previous, {"dramatiq.link.type": "previous_attempt"})]

        queue = canonical_queue(message.queue_name)
        attributes: dict[str, Any] = {
            "messaging.system": "dramatiq",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": message.message_id,
            "dramatiq.actor.name": message.actor_name,
            "dramatiq.message.retries": options.get("retries", 0),
        }
        if self._should_record_arguments():
            attributes["dramatiq.message.arguments"] = _arguments_text(message)
        span = self._tracer.start_span(
            f"process {queue}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes, links=links
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        self._local.delivery = _Delivery(message.message_id, span, token)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: object | None = None,
        exception: BaseException | None = None,
    ) -> None:
        delivery = self._take_delivery(message)
        if delivery is None:
            return
        span = delivery.span
        try:
            if span.is_recording():
                self._record_outcome(broker, span, message, exception, retried=delivery.retried)
        finally:
            span.end()
            otel_context.detach(delivery.token)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        delivery = self._take_delivery(message)
        if delivery is None:
            return
        span = delivery.span
        span.set_attribute("dramatiq.message.outcome", SKIPPED)
        if message.failed:
            span.set_attribute("dramatiq.message.dead_lettered", True)
        span.end()
        otel_context.detach(delivery.token)

    # -- helpers -----------------------------------------------------------------------------------

    def _record_outcome(
        self,
        broker: Broker,
        span: Span,
        message: MessageProxy,
        exception: BaseException | None,
        *,
        retried: bool,
    ) -> None:
        result = classify(broker, message, exception, retried=retried)
        if result.error and exception is not None:
            span.record_exception(exception)
        if message.failed:
            span.set_attribute("dramatiq.message.dead_lettered", True)
        span.set_attribute("dramatiq.message.outcome", result.outcome)
        if result.final_error and exception is not None:
            span.set_attribute("error.type", _qualified_name(type(exception)))
            span.set_status(Status(StatusCode.ERROR, _status_description(exception)))

    def _take_delivery(self, message: MessageProxy) -> _Delivery | None:
        delivery: _Delivery | None = getattr(self._local, "delivery", None)
        if delivery is None:
            return None
        self._local.delivery = None
        if delivery.message_id != message.message_id:
            # Cannot happen with Dramatiq's worker (one delivery per thread at a time); end the
            # orphan rather than leak it, and say so.
            logger.warning("Ending span of message %s left open by another delivery", delivery.message_id)
            delivery.span.end()
            otel_context.detach(delivery.token)
            return None
        return delivery

    def _pending_sends(self) -> dict[str, Span]:
        pending: dict[str, Span] | None = getattr(self._local, "pending_sends", None)
        if pending is None:
            pending = self._local.pending_sends = {}
        return pending

    def _should_record_arguments(self) -> bool:
        if self._record_arguments is None:
            self._record_arguments = load_settings().trace_arguments
        return self._record_arguments


class DramatiqTracing:
    """The seed's entry point, kept for code written against it.

    `DramatiqTracing.setup(service_name="wp-k8s-service")` configures the SDK for the calling
    process (an API server that enqueues) and makes sure the broker traces sends.
    """

    @staticmethod
    def setup(service_name: str | None = None, *, broker: Broker | None = None) -> TracerProvider | None:
        from .broker import get_broker, install_tracing  # noqa: PLC0415 - broker imports this module

        settings = load_settings()
        if service_name:
            settings = dataclasses.replace(settings, service_name=service_name)
        provider = configure_tracing(settings)
        install_tracing(broker or get_broker())
        return provider

    @staticmethod
    def shutdown(timeout: float | None = None) -> bool:
        """Flush spans at application shutdown, waiting at most `timeout` seconds."""
        return shutdown_tracing(load_settings().telemetry_flush_timeout if timeout is None else timeout)


# -- propagation -----------------------------------------------------------------------------------
#
# With the default propagators (W3C trace context + baggage, `OTEL_PROPAGATORS` unset or
# `tracecontext,baggage`), the common carrier is a single well-formed `traceparent`: read and write
# that one directly, exactly as the propagators would, and leave everything else to them. Saves a
# regular expression search, a composite dispatch and two getter/setter layers per message.

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
_default_textmap: dict[int, bool] = {}


def _is_default_textmap() -> bool:
    textmap = propagate.get_global_textmap()
    known = _default_textmap.get(id(textmap))
    if known is None:
        kinds = [type(propagator) for propagator in getattr(textmap, "_propagators", ())]
        known = type(textmap) is CompositePropagator and kinds == [TraceContextTextMapPropagator, W3CBaggagePropagator]
        _default_textmap.clear()
        _default_textmap[id(textmap)] = known
    return known


def _inject(span: Span) -> dict[str, str]:
    """The W3C carrier of `span` in the current context (its baggage included)."""
    context = trace.set_span_in_context(span)
    span_context = span.get_span_context()
    if (
        span_context.is_valid
        and not span_context.trace_state
        and not baggage.get_all(context)
        and _is_default_textmap()
    ):
        return {"traceparent": _traceparent(span_context)}
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier


def _extract(carrier: object) -> Context:
    if isinstance(carrier, dict) and len(carrier) == 1 and _is_default_textmap():
        header = carrier.get("traceparent")
        match = _TRACEPARENT.fullmatch(header) if isinstance(header, str) else None
        if match is not None:
            trace_id, span_id, flags = match.groups()
            if trace_id != _ZERO_TRACE_ID and span_id != _ZERO_SPAN_ID:
                remote = SpanContext(
                    int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16))
                )
                return trace.set_span_in_context(NonRecordingSpan(remote), Context())
    try:
        return propagate.extract(carrier)
    except (TypeError, AttributeError, ValueError):
        # A message whose carrier is not a map of strings (a foreign or hand-made producer): the
        # propagators raise on it; process the message as the start of a new trace instead.
        logger.debug("Ignoring a malformed trace context carrier: %r", carrier)
        return Context()


def _qualified_name(cls: type[BaseException]) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _status_description(exception: BaseException) -> str:
    text = f"{type(exception).__name__}: {exception}"
    return text if len(text) <= _STATUS_LIMIT else text[: _STATUS_LIMIT - 3] + "..."


def _arguments_text(message: Message[Any] | MessageProxy) -> str:
    text = json.dumps({"args": list(message.args), "kwargs": message.kwargs}, default=repr, sort_keys=True)
    return text if len(text) <= _ARGUMENTS_LIMIT else text[: _ARGUMENTS_LIMIT - 3] + "..."


def _traceparent(span_context: SpanContext) -> str:
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def _span_context_from_traceparent(value: object) -> SpanContext | None:
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
