"""The consumer of the lossless Redis broker: every message it fetched is delivered, buried or returned.

Dramatiq's `_RedisConsumer` fetches a batch into `message_cache` and decodes it all at once; what
it has not delivered when it closes stays in the worker's ack set, and one undecodable message
holds back the whole batch. `LosslessRedisConsumer` differs in three ways (fixes 1, 2 and 3 of
`redis_delivery.py`):

- it fetches with the `fetch` script, which returns each message with its Redis id, and tells the
  broker what it holds, so that nothing fetched is mistaken for lost, or forgotten;
- it decodes each message on its own (`message_decoding.py`) and buries the ones it cannot
  deliver, so the others are delivered;
- it acks together with the enqueues Redis refused while the message was processed (`settle`),
  and `close()` returns what it fetched and did not deliver.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import redis
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ActorNotFound, ConnectionClosed
from dramatiq.message import Message

from .message_decoding import UNKNOWN_ACTOR, bounded, decode_message
from .redis_holding import Deferred, HoldingRedisBroker

logger = logging.getLogger("worker_app.delivery")


class LosslessRedisConsumer(Consumer):
    """Fetches with ids, decodes each message on its own, and returns what it did not deliver.

    Made by `LosslessRedisBroker.consume()` (Dramatiq's `RedisBroker.consume`, through
    `consumer_class`), which passes its arguments by position, so they are positional here too:

    - `broker`: the broker it fetches for; it keeps what this consumer holds (`broker.held`).
    - `queue_name`: the queue (or delay queue, `<queue>.DQ`) it consumes.
    - `prefetch`: how many messages of the queue the process may hold at once, fetched or running.
    - `timeout`: the longest wait, in milliseconds, between two fetches of an empty queue.

    Example (what Dramatiq's `ConsumerThread` does with it)::

        consumer = broker.consume("default", prefetch=4, timeout=1000)
        for proxy in consumer:          # None when nothing came within the backoff
            if proxy is not None:
                ...                     # run the job, then
                consumer.ack(proxy)     # or consumer.nack(proxy) once it failed for good
        consumer.close()                # returns what was fetched and not delivered
    """

    def __init__(self, broker: HoldingRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = prefetch
        self.timeout = timeout
        self.misses = 0
        self._cache: deque[tuple[str, bytes]] = deque()
        self._is_delay_queue = queue_name.endswith(".DQ")

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self._cache:
                    redis_id, data = self._cache.popleft()
                    try:
                        proxy = self._admit(redis_id, data)
                    except redis.RedisError:
                        self._cache.appendleft((redis_id, data))  # returned by close()
                        raise
                    if proxy is not None:
                        self.misses = 0
                        return proxy
                    continue
                free = self.prefetch - self.broker.held_count(self.queue_name)
                if free > 0 and self._fetch(free):
                    continue
                self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                time.sleep(backoff_ms / 1000)
                return None
        except redis.RedisError as error:
            raise ConnectionClosed(error) from None

    def _fetch(self, count: int) -> int:
        reply = self.broker._script("fetch", self.queue_name, self.broker.broker_id, current_millis(), count)
        pairs = [
            (reply[index].decode() if isinstance(reply[index], bytes) else str(reply[index]), reply[index + 1])
            for index in range(0, len(reply), 2)
        ]
        self.broker._hold(self.queue_name, (redis_id for redis_id, _ in pairs))
        self._cache.extend(pairs)
        return len(pairs)

    def _admit(self, redis_id: str, data: bytes) -> MessageProxy | None:
        message, reason, actor_label = decode_message(data, self.queue_name)
        if message is not None:
            try:
                self.broker.get_actor(message.actor_name)
            except ActorNotFound:
                reason = f"unknown actor {bounded(message.actor_name, 80)!r}"
                actor_label = UNKNOWN_ACTOR
            else:
                message.options["redis_message_id"] = redis_id
                return MessageProxy(message)
        self._dead_letter(redis_id, data, reason, actor_label, message)
        return None

    def _dead_letter(
        self, redis_id: str, data: bytes, reason: str, actor_label: str, message: Message[Any] | None
    ) -> None:
        self.broker.bury(self.queue_name, redis_id, reason)
        queue = self.queue_name.removesuffix(".DQ")
        if self.broker.dead_lettered is not None:
            self.broker.dead_lettered.labels(queue, actor_label).inc()
        logger.warning(
            "Message dead-lettered: %s",
            reason,
            extra={
                "queue": queue,
                "redis_message_id": redis_id,
                "message_id": bounded(message.message_id, 64) if message else None,
                "message_actor": bounded(message.actor_name, 80) if message else None,
                "message_bytes": len(data),
                "dead_letter_queue": f"{queue}.XQ",
            },
        )

    def ack(self, message: MessageProxy) -> None:
        redis_id = message.options["redis_message_id"]
        deferred = self.broker._take_deferred()
        try:
            if deferred:
                self._settle(deferred, redis_id)
            else:
                self.broker._run("ack", self.queue_name, redis_id)
        except redis.RedisError as error:
            self.broker._local.deferred = deferred  # Dramatiq retries the ack: keep them for it
            raise ConnectionClosed(error) from None
        self._finish(redis_id)

    def nack(self, message: MessageProxy) -> None:
        redis_id = message.options["redis_message_id"]
        deferred = self.broker._take_deferred()
        try:
            if deferred:
                self._settle(deferred, "")
            self.broker._run("nack", self.queue_name, redis_id)
        except redis.RedisError as error:
            raise ConnectionClosed(error) from None
        self._finish(redis_id)

    def _settle(self, deferred: list[Deferred], ack_id: str) -> None:
        triples: list[Any] = []
        for item in deferred:
            triples += [item.queue_name, item.redis_message_id, item.data]
        self.broker._script("settle", self.queue_name, self.broker.broker_id, ack_id, *triples)

    def _finish(self, redis_id: str) -> None:
        self.broker._release(self.queue_name, [redis_id])
        self.broker._local.processing = None

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        self._requeue([message.options["redis_message_id"] for message in messages])

    def _requeue(self, redis_ids: list[str]) -> None:
        if not redis_ids:
            return
        try:
            self.broker._run("requeue", self.queue_name, *redis_ids)
        except redis.RedisError as error:
            raise ConnectionClosed(error) from None
        self.broker._release(self.queue_name, redis_ids)

    def close(self) -> None:
        """Return the prefetched messages (and, on a delay queue, everything still held) to Redis.

        On a delay queue that includes what Dramatiq's `ConsumerThread` dropped from memory after a
        connection error. If Redis does not answer, they stay in the ack set, held by no one: this
        worker's recovery runs return them (on the second run), or another worker's once it is gone.
        """
        redis_ids = {redis_id for redis_id, _ in self._cache}
        self._cache.clear()
        if self._is_delay_queue:
            redis_ids |= self.broker.held(self.queue_name)
        # From here on nobody in this process holds them: if the requeue fails, the recovery run
        # returns them (they are no longer held, so they are not mistaken for work in progress).
        self.broker._release(self.queue_name, redis_ids)
        try:
            self._requeue(sorted(redis_ids))
        except ConnectionClosed:
            logger.warning(
                "Could not return %d prefetched message(s) to Redis; the recovery run returns them",
                len(redis_ids),
                extra={"queue": self.queue_name},
            )
