"""One log line for every job that failed for good, with the reason.

Dramatiq logs unexpected errors with a traceback but declared (`throws`) failures only by class
name; an operator looking at a dead-lettered clone request needs the reason (e.g. which argument
was wrong), in a line that carries the job's trace id.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dramatiq import Middleware

from .queues import canonical_queue

if TYPE_CHECKING:
    from dramatiq import Broker
    from dramatiq.broker import MessageProxy

logger = logging.getLogger("worker_app.jobs")


class FailureLog(Middleware):
    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: object | None = None,
        exception: BaseException | None = None,
    ) -> None:
        if message.failed and exception is not None:
            logger.warning(
                "Job dead-lettered: %s",
                exception,
                extra={
                    "error_type": type(exception).__name__,
                    "retries": message.options.get("retries", 0),
                    "dead_letter_queue": f"{canonical_queue(message.queue_name)}.XQ",
                },
            )
