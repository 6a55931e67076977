"""How a delivery ended, decided once (by `delivery.DeliveryTracker`) so that spans, metrics and logs agree.

- success: the actor returned (or raised one of its declared `non_error_exceptions`).
- retried: the message was enqueued again for another attempt (an error or `Retry`).
- failed: the message was dead-lettered, or an error will not be retried by anything.
- skipped: a middleware skipped the message before the actor ran (e.g. its age limit passed).

`error` is true when the actor raised an exception that counts as an error: not `Retry` (a
request to run again later) and not a declared non-error exception. A retried error is still an
error (it is counted), but only an error that ends the message (`final_error`) makes the span's
status ERROR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dramatiq.errors import Retry

if TYPE_CHECKING:
    from dramatiq import Broker
    from dramatiq.broker import MessageProxy

#: Actor option: exception classes that end a delivery without it being an error.
NON_ERROR_EXCEPTIONS_OPTION = "non_error_exceptions"

#: The actor returned, or raised one of its `non_error_exceptions`.
SUCCESS = "success"
#: The message was enqueued again for another attempt.
RETRIED = "retried"
#: Dead-lettered, or an error nothing will retry.
FAILED = "failed"
#: A middleware skipped the message before the actor ran.
SKIPPED = "skipped"
#: Every outcome, the values of the `outcome` label and of `dramatiq.message.outcome`.
OUTCOMES = (SUCCESS, RETRIED, FAILED, SKIPPED)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryOutcome:
    """The decision about one delivery.

    :param outcome: one of `OUTCOMES`.
    :param error: the actor raised an exception that counts as an error (counted, recorded on the span).
    :param final_error: that error ends the message (the span's status is ERROR).
    """

    outcome: str
    error: bool
    final_error: bool


#: Every possible decision, made once: they are immutable, and a delivery's is read by every observer.
_DECISIONS = {
    (outcome, error, final_error): DeliveryOutcome(outcome=outcome, error=error, final_error=final_error)
    for outcome in OUTCOMES
    for error in (False, True)
    for final_error in (False, True)
}


def classify(
    broker: Broker,
    message: MessageProxy,
    exception: BaseException | None,
    *,
    retried: bool,
    skipped: bool = False,
) -> DeliveryOutcome:
    """Classify a finished delivery.

    :param exception: what the actor raised (None when it returned or never ran).
    :param retried: the message was enqueued again from inside this delivery.
    :param skipped: a middleware skipped the message before the actor ran (`after_skip_message`).
    """
    if skipped:
        return _DECISIONS[SKIPPED, False, False]
    if exception is None:  # the common case first: no error to weigh
        error = False
    else:
        error = not isinstance(exception, Retry) and not is_non_error(broker, message, exception)
    if error and (message.failed or not retried):
        return _DECISIONS[FAILED, True, True]
    if message.failed:
        return _DECISIONS[FAILED, error, False]
    if retried:
        return _DECISIONS[RETRIED, error, False]
    return _DECISIONS[SUCCESS, False, False]


def is_non_error(broker: Broker, message: MessageProxy, exception: BaseException) -> bool:
    """The actor declares `exception` in its `non_error_exceptions` option."""
    try:
        actor = broker.get_actor(message.actor_name)
    except Exception:  # an unknown actor declares nothing
        return False
    # Actor option only: message options travel as JSON and cannot name exception classes.
    declared: type[BaseException] | tuple[type[BaseException], ...] | None = actor.options.get(
        NON_ERROR_EXCEPTIONS_OPTION
    )
    return declared is not None and isinstance(exception, declared)
