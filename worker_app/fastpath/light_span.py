"""Our producer and consumer spans without the SDK's per-span machinery, exported exactly the same.

Reference behaviour: `opentelemetry.sdk.trace.Tracer.start_span` and the SDK's `Span` (1.45). The
SDK cleans every attribute of every span through `BoundedAttributes`, asks the sampler, builds a
lock-guarded span with bounded event and link lists, and at the end copies it into a
`ReadableSpan` for the processors at the end. For the spans this package starts, with known-clean
attributes and the default sampler, most of that is work whose answer is known; `LightSpan` skips
it, and is itself a `ReadableSpan` (the same fields), which the same span processors get at the end.

`LightSpan` implements the whole API `Span` (user code in an actor gets it from
`trace.get_current_span()`: `set_attribute`, `add_event`, `record_exception`, `set_status`, child
spans all behave as on the SDK's span, span limits included) and reads like a `ReadableSpan` for a
processor's `on_start`. `SpanStarter` falls back to the SDK's own `start_span` whenever the provider
is not the SDK's, or something about it may need the SDK's span (a disabled tracer), and always
when told to (`light=False`: the SDK's internal span metrics count only spans it starts itself). `tests/worker/test_fast_paths.py` runs user-code scenarios both ways (with
and without span limits, sampled and not) and compares what the exporter receives.
"""

from __future__ import annotations

import enum
import logging
import threading
import traceback
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.sampling import DEFAULT_ON
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

logger = logging.getLogger("opentelemetry.sdk.trace")  # the SDK's own warnings, under its name

#: Attribute value types the SDK keeps as they are (anything else it cleans, converts or drops).
_PLAIN = frozenset({str, bool, int, float})
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
#: A span's status until someone sets one (the SDK's default is the same immutable value).
_UNSET = Status(StatusCode.UNSET)
#: The lock of every ended light span. A span's own lock is only needed until it ends (afterwards
#: each setter just sees the end and refuses); dropping it at the end frees it in the thread that
#: made it, before the span waits in the export queue. Kept to the export thread, per-span locks
#: (memory the C allocator hands out per thread) held a worker process 0.3-0.6 MB higher.
#: Reentrant: a setter's warning, logged under it, may reach a handler that touches another span.
_ENDED_LOCK = threading.RLock()


class _FromContext(enum.Enum):
    FROM_CONTEXT = "the current span of the context given"


#: `SpanStarter.start_span`'s default parent: the span context of the current span of its `context`.
FROM_CONTEXT = _FromContext.FROM_CONTEXT


class _Pipeline:
    """What an SDK tracer gives its spans, read once: the light path's view of the provider."""

    __slots__ = ("_enabled", "ending", "ids", "info", "limits", "processor", "resource", "sampler", "scope")

    def __init__(self, tracer: SdkTracer, scope: InstrumentationScope, limits: SpanLimits) -> None:
        self.sampler = tracer.sampler
        self.ids = tracer.id_generator
        self.resource: Resource = tracer.resource
        self.processor = tracer.span_processor
        # The SDK's "span ending" hook (not public yet): called when its processors have one.
        self.ending = getattr(self.processor, "_on_ending", None)
        self.info = tracer.instrumentation_info
        self.scope = scope
        self.limits = limits
        self._enabled = getattr(tracer, "_is_enabled", None)

    def enabled(self) -> bool:
        return self._enabled is None or bool(self._enabled())


class SpanStarter:
    """Starts the spans of one instrumentation scope, light whenever that changes nothing.

    :param name: the instrumentation scope's name.
    :param version: its version.
    :param schema_url: its semantic-conventions schema URL.
    :param tracer_provider: where spans go; None: the global provider, looked up until one is set.
    :param light: False: always the SDK's own `start_span` (e.g. for the SDK's internal span metrics).

    Example::

        spans = SpanStarter(name="worker_app", version="1.0", schema_url=SCHEMA_URL)
        span = spans.start_span("process jobs", context=parent, kind=SpanKind.CONSUMER,
                                attributes={"messaging.system": "dramatiq"})
        ...
        span.end()
    """

    def __init__(
        self,
        *,
        name: str,
        version: str,
        schema_url: str,
        tracer_provider: trace.TracerProvider | None = None,
        light: bool = True,
    ) -> None:
        self._scope = (name, version, schema_url)
        self._given = tracer_provider
        self._tracer = trace.get_tracer(name, version, tracer_provider=tracer_provider, schema_url=schema_url)
        self._light = light
        self._seen: trace.TracerProvider | None = None
        self._pipeline: _Pipeline | None = None
        #: The provider can no longer change: the one given, or the global once set (the API sets it
        #: once per process); until then the global is the API's proxy and is looked up per span.
        self._final = False

    def start_span(
        self,
        name: str,
        *,
        context: Context | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        links: Sequence[Link] | None = None,
        parent: SpanContext | _FromContext | None = FROM_CONTEXT,
    ) -> trace.Span:
        """The SDK tracer's `start_span`, light where that changes nothing.

        `parent` is the span context of `context`'s current span when the caller already holds it
        (as `propagation.extract_parent` gives it; None: there is none), so it is not looked up again.
        """
        pipeline = self._pipeline if self._final else self._resolve()
        if pipeline is None or not pipeline.enabled():
            return self._tracer.start_span(name, context=context, kind=kind, attributes=attributes, links=links)
        if parent is FROM_CONTEXT:
            parent = trace.get_current_span(context).get_span_context()
        if parent is not None and not parent.is_valid:
            parent = None
        trace_id = pipeline.ids.generate_trace_id() if parent is None else parent.trace_id
        if pipeline.sampler is DEFAULT_ON and (parent is None or parent.trace_flags.sampled):
            # ParentBased(ALWAYS_ON) samples a root or a sampled parent's child as it is.
            trace_state = None if parent is None else parent.trace_state
            span_attributes: Mapping[str, Any] = attributes
            flags, recording = _SAMPLED, True
        else:
            result = pipeline.sampler.should_sample(context, trace_id, name, kind, attributes, links or ())
            trace_state, span_attributes = result.trace_state, result.attributes
            decision = result.decision
            flags = TraceFlags(TraceFlags.SAMPLED if decision.is_sampled() else TraceFlags.DEFAULT)  # type: ignore[no-untyped-call]
            recording = decision.is_recording()  # type: ignore[no-untyped-call]
        if pipeline.ids.is_trace_id_random() if parent is None else parent.trace_flags.random_trace_id:
            flags = TraceFlags(flags | TraceFlags.RANDOM_TRACE_ID)
        span_context = SpanContext(trace_id, pipeline.ids.generate_span_id(), False, flags, trace_state)
        if not recording:
            return NonRecordingSpan(span_context)
        span = LightSpan(
            name=name,
            context=span_context,
            parent=parent,
            kind=kind,
            attributes=span_attributes,
            links=links,
            pipeline=pipeline,
        )
        # Processors get it as the SDK's span (it reads like one: a ReadableSpan and an API Span).
        pipeline.processor.on_start(span, parent_context=context)  # type: ignore[arg-type]
        return span

    def _resolve(self) -> _Pipeline | None:
        provider = self._given if self._given is not None else trace.get_tracer_provider()
        if provider is self._seen:
            return self._pipeline
        self._seen, self._pipeline = provider, None
        if self._light and isinstance(provider, SdkTracerProvider):
            name, version, schema_url = self._scope
            tracer = provider.get_tracer(name, version, schema_url=schema_url)
            limits = getattr(tracer, "_span_limits", None)  # the provider's (not public): else the SDK's path
            if type(tracer) is SdkTracer and isinstance(limits, SpanLimits):
                scope = InstrumentationScope(name, version, schema_url, None)
                self._pipeline = _Pipeline(tracer, scope, limits)
        # Last, once the pipeline is in place: a thread that sees it final reads that pipeline.
        self._final = self._given is not None or not isinstance(provider, trace.ProxyTracerProvider)
        return self._pipeline


class LightSpan(trace.Span, ReadableSpan):
    """A recording span that behaves as the SDK's and, once ended, is the `ReadableSpan` processors get.

    Made by `SpanStarter.start_span` only. Attributes stay a plain dict while they are the starter's
    known-clean ones; the first attribute from anyone else (or span limits that could cut one) makes
    them the SDK's `BoundedAttributes`, with the SDK's cleaning, limits and dropped count.
    """

    def __init__(
        self,
        *,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        links: Sequence[Link] | None,
        pipeline: _Pipeline,
    ) -> None:
        limits = pipeline.limits
        self._name, self._parent, self._kind, self._pipeline = name, parent, kind, pipeline
        self._context: SpanContext = context
        plain = limits.max_span_attribute_length is None and (
            limits.max_span_attributes is None or len(attributes) <= limits.max_span_attributes
        )
        if plain:
            for value in attributes.values():
                if type(value) not in _PLAIN:
                    plain = False
                    break
        self._attributes: dict[str, Any] | BoundedAttributes = dict(attributes) if plain else self._bounded(attributes)
        self._events: Sequence[Event] = ()  # a BoundedList from the first event on
        self._links: Sequence[Link] = _bounded_links(links, limits) if links else ()
        self._status = _UNSET
        self._resource = pipeline.resource
        self._instrumentation_scope = pipeline.scope
        self._instrumentation_info = pipeline.info
        self._end_time: int | None = None
        self._lock: AbstractContextManager[Any] = threading.Lock()
        self._start_time: int | None = time_ns()

    def _bounded(self, attributes: Mapping[str, Any] | None) -> BoundedAttributes:
        limits = self._pipeline.limits
        return BoundedAttributes(
            limits.max_span_attributes, attributes, immutable=False, max_value_len=limits.max_span_attribute_length
        )

    # -- ReadableSpan ----------------------------------------------------------------------------
    # Its fields are a `ReadableSpan`'s, under the same names, so its properties and `to_json` are
    # that class's own, and an ended light span is handed to the processors as it is: the SDK hands
    # them a copy of its span because that span stays mutable, while an ended light span refuses
    # every change (each setter checks the end under the span's lock, as the SDK's does).

    # -- Span --------------------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        with self._lock:
            if self._end_time is not None:
                logger.warning("Setting attribute on ended span.")
                return
            if type(self._attributes) is dict:
                self._attributes = self._bounded(self._attributes)
            for key, value in attributes.items():
                self._attributes[key] = value

    def set_known_attributes(self, attributes: Mapping[str, str | bool | int | float]) -> None:
        """`set_attributes` for attributes of plain values that fit the limits: kept as they are."""
        with self._lock:
            attributes_now = self._attributes
            limit = self._pipeline.limits.max_span_attributes
            fits = limit is None or len(attributes_now) + len(attributes) <= limit
            if type(attributes_now) is dict and fits and self._end_time is None:
                attributes_now.update(attributes)
                return
        self.set_attributes(attributes)

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        limits = self._pipeline.limits
        bounded = BoundedAttributes(
            limits.max_event_attributes, attributes, max_value_len=limits.max_attribute_length, immutable=True
        )
        if not self._if_recording("_add_event"):
            return
        with self._lock:
            if not isinstance(self._events, BoundedList):
                self._events = BoundedList(limits.max_events)
            self._events.append(Event(name=name, attributes=bounded, timestamp=timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        link = _bounded_links([Link(context, attributes)], self._pipeline.limits)  # empty when not valid
        if link and self._if_recording("_add_link"):
            with self._lock:
                if not isinstance(self._links, BoundedList):
                    self._links = BoundedList.from_seq(self._pipeline.limits.max_links, self._links)
                self._links.extend(link)

    def update_name(self, name: str) -> None:
        if self._if_recording("update_name"):
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if not self._if_recording("set_status"):
            return
        if self._status.status_code is StatusCode.OK:
            return  # final once OK, as the SDK's
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                logger.warning(
                    "Description %s ignored. Use either `Status` or `(StatusCode, Description)`", description
                )
            self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module, qualname = type(exception).__module__, type(exception).__qualname__
        recorded: dict[str, types.AnyValue] = {
            EXCEPTION_TYPE: f"{module}.{qualname}" if module and module != "builtins" else qualname,
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
            EXCEPTION_ESCAPED: str(escaped),
        }
        if attributes:
            recorded.update(attributes)
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._end_time is not None:
                logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
        self._lock = _ENDED_LOCK  # a setter already holding the span's own lock sees the end next
        pipeline = self._pipeline
        if pipeline.ending is not None:
            pipeline.ending(self)
        pipeline.processor.on_end(self)  # ended: read-only from here on (see "ReadableSpan" above)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        if exc_val is not None and self.is_recording():
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    def _if_recording(self, what: str) -> bool:
        if self._end_time is None:
            return True
        logger.warning("Tried calling %s on an ended span.", what)
        return False

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'


def _bounded_links(links: Sequence[Link], limits: SpanLimits) -> BoundedList[Link]:
    valid = [
        Link(
            link.context,
            BoundedAttributes(
                limits.max_link_attributes, link.attributes, max_value_len=limits.max_attribute_length, immutable=True
            ),
        )
        for link in links
        if link and link.context and (link.context.is_valid or (link.attributes or link.context.trace_state))
    ]
    return BoundedList.from_seq(limits.max_links, valid)
