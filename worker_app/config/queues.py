"""Queue names: the only place they are spelled, so settings, actors and the chart agree."""

from __future__ import annotations

CLONE_QUEUE = "clone-queue"
PING_QUEUE = "ping"

#: Every queue an actor of this package is declared on, in the order a worker consumes them.
ALL_QUEUES: tuple[str, ...] = (CLONE_QUEUE, PING_QUEUE)

#: Dramatiq's Redis key namespace (the broker default, kept explicit because the queue-depth
#: collector, KEDA's `listName` and the probe build key names from it).
REDIS_NAMESPACE = "dramatiq"


def canonical_queue(queue_name: str) -> str:
    """The queue a message belongs to, without Dramatiq's delay (`.DQ`) or dead-letter (`.XQ`) suffix."""
    if queue_name.endswith((".DQ", ".XQ")):
        return queue_name[:-3]
    return queue_name
