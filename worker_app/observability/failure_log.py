"""One log line for every job that failed for good, with the reason.

Dramatiq logs unexpected errors with a traceback but declared (`throws`) failures only by class
name; an operator looking at a dead-lettered clone request needs the reason (e.g. which argument
was wrong), in a line that carries the job's trace id.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dramatiq import Message

    from .delivery import Delivery

#: The logger of the line (log pipelines and tests select it by name).
LOGGER_NAME = "worker_app.jobs"

logger = logging.getLogger(LOGGER_NAME)


class FailureLog:
    """Logs `Job dead-lettered: <reason>` for each delivery that dead-lettered its message.

    A `DeliveryObserver`: it reads the record `DeliveryTracker` keeps and writes while the job is
    still current (`build_broker` arranges it), so the JSON line carries the job's `trace_id`,
    `actor` and `message_id`. Fields: `error_type`, `retries`, `dead_letter_queue`. It takes no
    parameters.

    Example::

        deliveries = DeliveryTracker(observers=[tracing, metrics, FailureLog()])
    """

    def delivery_started(self, delivery: Delivery) -> None:
        return None

    def delivery_retried(self, delivery: Delivery, state: None, message: Message[Any], *, first: bool) -> None:
        return None

    def delivery_finished(self, delivery: Delivery, state: None) -> None:
        exception = delivery.exception
        message = delivery.message
        if message.failed and exception is not None:
            logger.warning(
                "Job dead-lettered: %s",
                exception,
                extra={
                    "error_type": type(exception).__name__,
                    "retries": message.options.get("retries", 0),
                    "dead_letter_queue": f"{delivery.queue}.XQ",
                },
            )

    def delivery_abandoned(self, delivery: Delivery, state: None) -> None:
        return None
