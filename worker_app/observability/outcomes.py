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
        return DeliveryOutcome(outcome=SKIPPED, error=False, final_error=False)
    error = exception is not None and not isinstance(exception, Retry) and not is_non_error(broker, message, exception)
    if error and (message.failed or not retried):
        return DeliveryOutcome(outcome=FAILED, error=True, final_error=True)
    if message.failed:
        return DeliveryOutcome(outcome=FAILED, error=error, final_error=False)
    if retried:
        return DeliveryOutcome(outcome=RETRIED, error=error, final_error=False)
    return DeliveryOutcome(outcome=SUCCESS, error=False, final_error=False)


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
