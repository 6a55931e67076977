"""`dramatiq_queue_depth{queue,state}`, read from the broker's Redis keys at scrape time.

One pipelined round trip per scrape, whatever the number of queues. Every pod reports the same
global numbers, so dashboards aggregate with `max by (queue, state)`.

Key layout of Dramatiq's Redis broker (namespace `dramatiq`), per queue `q`:
- `q`: list of ready message ids;  `q.msgs`: hash of every unacked message (ready + in flight);
- `q.DQ.msgs`: hash of delayed messages (including those a worker prefetched into memory, which is
  why the `q.DQ` list alone would undercount);  `q.XQ`: sorted set of dead-lettered ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

import redis
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..config.queues import REDIS_NAMESPACE

logger = logging.getLogger("worker_app.queue_depth")  # its name from before the split: log queries select on it

STATES = ("ready", "in_flight", "delayed", "dead")
_WARN_INTERVAL = 60.0


class QueueDepthCollector(Collector):
    """`dramatiq_queue_depth{queue,state}` and `dramatiq_broker_up`, read from Redis at each scrape.

    A Redis that does not answer makes `dramatiq_broker_up` 0 (and logs a warning at most once a
    minute); the scrape itself still succeeds.

    :param client_factory: makes the Redis client, on the first scrape (so registering the collector
      never touches the network); give one with short timeouts and no retries.
    :param queues: the queues to report.
    :param namespace: Dramatiq's Redis key namespace.

    Example::

        depth = QueueDepthCollector(client_factory=lambda: redis.Redis(socket_timeout=1), queues=ALL_QUEUES)
        registry.register(depth)
        depth.read()  # {"clone-queue": {"ready": 0, "in_flight": 0, "delayed": 0, "dead": 0}, ...}
    """

    def __init__(
        self,
        *,
        client_factory: Callable[[], redis.Redis],
        queues: Sequence[str],
        namespace: str = REDIS_NAMESPACE,
    ) -> None:
        self._client_factory = client_factory
        self._client: redis.Redis | None = None
        self._queues = tuple(queues)
        self._namespace = namespace
        self._last_warning = 0.0

    def describe(self) -> Iterator[Metric]:
        # Declared without reading Redis, so registering the collector never touches the network.
        yield GaugeMetricFamily("dramatiq_queue_depth", _DEPTH_HELP, labels=["queue", "state"])
        yield GaugeMetricFamily("dramatiq_broker_up", _UP_HELP)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("dramatiq_broker_up", _UP_HELP)
        try:
            depths = self.read()
        except redis.RedisError as error:
            self._warn(error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        depth = GaugeMetricFamily("dramatiq_queue_depth", _DEPTH_HELP, labels=["queue", "state"])
        for queue, by_state in depths.items():
            for state in STATES:
                depth.add_metric([queue, state], by_state[state])
        yield depth
        yield up

    def read(self) -> dict[str, dict[str, int]]:
        """Depth by queue and state, in one pipelined round trip."""
        if self._client is None:
            self._client = self._client_factory()
        pipe = self._client.pipeline(transaction=False)
        for queue in self._queues:
            key = f"{self._namespace}:{queue}"
            pipe.llen(key)
            pipe.hlen(f"{key}.msgs")
            pipe.hlen(f"{key}.DQ.msgs")
            pipe.zcard(f"{key}.XQ")
        replies = pipe.execute()
        depths: dict[str, dict[str, int]] = {}
        for index, queue in enumerate(self._queues):
            ready, unacked, delayed, dead = (int(value) for value in replies[index * 4 : index * 4 + 4])
            depths[queue] = {
                "ready": ready,
                # Ids move from the list to a worker's ack set when fetched; both stay in `.msgs`.
                "in_flight": max(unacked - ready, 0),
                "delayed": delayed,
                "dead": dead,
            }
        return depths

    def _warn(self, error: redis.RedisError) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _WARN_INTERVAL:
            self._last_warning = now
            logger.warning("Queue depth unavailable: Redis did not answer (%s)", type(error).__name__)


_DEPTH_HELP = (
    "Messages per queue and state (ready, in_flight, delayed, dead), read from Redis at scrape time; "
    "global, identical on every pod."
)
_UP_HELP = "1 when the last queue-depth read from Redis succeeded, else 0."
