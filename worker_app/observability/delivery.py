"""One record per delivery: started, retried, decided once, and told to the observers that read it.

A delivery is one attempt at processing a message in a worker thread. `DeliveryTracker` is the only
middleware that follows it through Dramatiq's hooks: it opens the record before the actor runs,
notices when the same message is enqueued again from inside its own delivery (a retry), decides
the outcome once (`outcomes.classify`, here and nowhere else) and hands the finished record to its
observers: tracing (the consumer span), metrics (counters, timing, exemplars) and the failure log.
The observers never look at Dramatiq's hooks or at each other, so what one of them records can
never disagree with another.

Records are kept per worker thread, never by message id, since a retry is the same message id
delivered again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from dramatiq import Middleware

from ..config.queues import canonical_queue
from .outcomes import DeliveryOutcome, classify

if TYPE_CHECKING:
    from dramatiq import Broker, Message
    from dramatiq.broker import MessageProxy
    from opentelemetry.trace import SpanContext

logger = logging.getLogger(__name__)

H = TypeVar("H")


@dataclass(slots=True, eq=False, kw_only=True)
class Delivery:
    """What is known about the delivery running in this thread.

    :param message: the message being processed.
    :param message_id: its id.
    :param queue: its queue, without Dramatiq's `.DQ`/`.XQ` suffix.
    :param actor: the actor's name.
    :param started: `time.perf_counter()` when the delivery began.
    :param retried: the message was enqueued again from inside this delivery.
    :param span_context: the consumer span's context, set by tracing when it starts the span (metrics
      attaches it to the processing-time observation as an exemplar); None without tracing.
    :param exception: what the actor raised, once finished.
    :param outcome: the decision, once finished (`outcomes.classify`).
    """

    message: MessageProxy
    message_id: str
    queue: str
    actor: str
    started: float
    retried: bool = False
    span_context: SpanContext | None = None
    exception: BaseException | None = None
    outcome: DeliveryOutcome | None = None


class DeliveryObserver(Protocol[H]):
    """What `DeliveryTracker` tells about each delivery. `H` is the observer's own per-delivery state.

    Observers are told of a start in the order they were given and of the end in reverse (like
    Dramatiq's own hooks), so the first observer's state (tracing's current span) wraps the others'.
    """

    def delivery_started(self, delivery: Delivery) -> H:
        """Before the actor runs; returns the state handed back with this delivery's next events."""

    def delivery_retried(self, delivery: Delivery, state: H, message: Message[Any], *, first: bool) -> None:
        """`message` (the delivery's message) is about to be enqueued again; `first` on the first time."""

    def delivery_finished(self, delivery: Delivery, state: H) -> None:
        """After the actor (or a skip), with `delivery.outcome` decided."""

    def delivery_abandoned(self, delivery: Delivery, state: H) -> None:
        """The delivery never finished through Dramatiq's hooks: release what it holds, record nothing."""


class _Active:
    """The delivery this thread runs, and each observer's state for it (in the order they were told)."""

    __slots__ = ("delivery", "states")

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.states: list[tuple[DeliveryObserver[Any], Any]] = []


class DeliveryTracker(Middleware):
    """Keeps one `Delivery` record per worker thread and tells its observers about it.

    It decides each delivery's outcome once, in its after-hook; where it stands in the middleware
    list (so that `Retries` has decided by then) is `runtime.broker.build_broker`'s rule.

    :param observers: what reads the records (e.g. `OpenTelemetryMiddleware`, `PrometheusMetrics`,
      `FailureLog`), told of a start in this order and of the end in reverse.

    Example::

        tracing = OpenTelemetryMiddleware()
        metrics = PrometheusMetrics()
        deliveries = DeliveryTracker(observers=[tracing, metrics, FailureLog()])
        broker = RedisBroker(middleware=[CurrentMessage(), deliveries, tracing, metrics, Retries()])
    """

    def __init__(self, *, observers: Sequence[DeliveryObserver[Any]]) -> None:
        self._observers = tuple(observers)
        self._local = threading.local()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        leftover: _Active | None = getattr(self._local, "active", None)
        if leftover is not None:
            self._abandon(leftover)
        # Dramatiq's proxy resolves each attribute of its message through `__getattr__`: read them once.
        raw = getattr(message, "_message", message)
        delivery = Delivery(
            message=message,
            message_id=raw.message_id,
            queue=canonical_queue(raw.queue_name),
            actor=raw.actor_name,
            started=time.perf_counter(),
        )
        active = _Active(delivery)
        self._local.active = active
        states = active.states
        for observer in self._observers:
            try:
                states.append((observer, observer.delivery_started(delivery)))
            except Exception:
                logger.critical("Unexpected failure in delivery_started of %r.", observer, exc_info=True)

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        active: _Active | None = getattr(self._local, "active", None)
        if active is None or active.delivery.message_id != message.message_id:
            return
        # The message this thread is processing is enqueued again: that is a retry.
        first = not active.delivery.retried
        active.delivery.retried = True
        for observer, state in active.states:
            try:
                observer.delivery_retried(active.delivery, state, message, first=first)
            except Exception:
                logger.critical("Unexpected failure in delivery_retried of %r.", observer, exc_info=True)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: object | None = None,
        exception: BaseException | None = None,
    ) -> None:
        self._finish(broker, message, exception, skipped=False)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._finish(broker, message, None, skipped=True)

    def _take(self, message: MessageProxy) -> _Active | None:
        active: _Active | None = getattr(self._local, "active", None)
        self._local.active = None
        if active is None:
            return None
        if active.delivery.message is not message and active.delivery.message_id != message.message_id:
            # Cannot happen with Dramatiq's worker (one delivery per thread at a time); release the
            # orphan rather than leak it.
            self._abandon(active)
            return None
        return active

    def _finish(self, broker: Broker, message: MessageProxy, exception: BaseException | None, *, skipped: bool) -> None:
        active = self._take(message)
        if active is None:
            return
        delivery = active.delivery
        delivery.exception = exception
        # The decision, made here and nowhere else.
        delivery.outcome = classify(broker, message, exception, retried=delivery.retried, skipped=skipped)
        for observer, state in reversed(active.states):
            try:
                observer.delivery_finished(active.delivery, state)
            except Exception:
                logger.critical("Unexpected failure in delivery_finished of %r.", observer, exc_info=True)

    def _abandon(self, active: _Active) -> None:
        logger.warning("Releasing delivery of message %s left open by another delivery", active.delivery.message_id)
        for observer, state in reversed(active.states):
            try:
                observer.delivery_abandoned(active.delivery, state)
            except Exception:
                logger.critical("Unexpected failure in delivery_abandoned of %r.", observer, exc_info=True)
