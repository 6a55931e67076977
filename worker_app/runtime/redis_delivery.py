"""Lossless delivery on Dramatiq's Redis broker: nothing fetched is ever dropped or stranded.

Dramatiq's `RedisBroker` keeps every fetched message in an ack set (`__acks__.<worker>.<queue>`)
until it is acked, and returns the ack sets of workers whose heartbeat is older than
`heartbeat_timeout` to their queues, but only during "maintenance", which runs on one command in
a thousand. Measured against a real worker, that left messages behind in five ways; each is fixed
here, in a subclass, and each belongs in Dramatiq itself (`dramatiq/brokers/redis.py`):

1. **Prefetched messages on shutdown.** `_RedisConsumer` keeps fetched-but-undelivered messages in
   `message_cache`, and `close()` does nothing with them: they stayed in the stopped worker's ack
   set. `LosslessRedisConsumer.close()` requeues them (and, for a delay queue, everything it still
   holds, since Dramatiq's `ConsumerThread` drops its in-memory delay queue after a connection error).
2. **A retry or delay that cannot be enqueued** (Redis down) was logged CRITICAL by `Retries` and
   the message acked anyway: lost. Here an enqueue of the message a worker thread is processing is
   deferred instead, and written atomically with that message's ack (`settle` script). Until Redis
   answers, Dramatiq's worker retries the ack every 5 s; if the process dies first, the original
   message is still in the ack set and comes back.
3. **An undecodable message** (not JSON, no message fields, a JSON array, wrong field types, a
   queue name that is not the consumer's) raised out of `__next__`, and the good messages fetched in
   the same batch stayed in the ack set of a live worker for as long as it lived. Here each fetched
   message is decoded on its own; a bad one is moved to the dead-letter queue (`bury` script) with
   its reason in `<queue>.XQ.reason:<id>` (kept as long as the dead letter), counted in
   `dramatiq_messages_dead_lettered_total` and logged once in a bounded line. So is a message for an
   actor this worker does not know, which Dramatiq dead-letters without counting.
4. **Orphaned ack sets** of stopped workers came back only by the 1-in-1,000 chance. A
   `RecoverySchedule` thread in every worker process reclaims the ack sets of dead workers at boot
   and every `recovery_interval` seconds, and beats this worker's heartbeat on the same schedule (a
   worker whose threads are all busy with long jobs does not fetch, so Dramatiq's heartbeat alone
   could let another worker steal its running jobs). At graceful shutdown the worker marks itself
   gone, so whatever it could not return (a job still running at the shutdown timeout) is reclaimed
   at the next run of any worker instead of a heartbeat timeout later.
5. **Fetched replies lost with the connection** (the fetch script ran, the reply did not arrive):
   the messages sat in a live worker's ack set. The schedule also compares this process's own ack
   sets with what it holds, and returns what it has not held on two runs in a row.

What still runs twice (at-least-once): a job whose process is killed, or still running at the
shutdown timeout, after it did its work but before its ack; a job of a process that stalls for
longer than the heartbeat timeout (another worker reclaims it).

Example::

    broker = LosslessRedisBroker(client=redis.Redis(), dead_lettered=metrics.dead_lettered,
                                 heartbeat_timeout=60_000)
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import redis
from dramatiq import Middleware
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import compute_backoff, current_millis, dq_name
from dramatiq.errors import ActorNotFound, ConnectionClosed
from dramatiq.message import Message

from .message_decoding import UNKNOWN_ACTOR, bounded, decode_message
from .redis_scripts import SCRIPTS

if TYPE_CHECKING:
    from dramatiq import Broker, Worker

logger = logging.getLogger("worker_app.delivery")

#: Longest reason stored with a dead letter and logged.
MAX_REASON_CHARS = 300
#: Default seconds between two recovery runs (and heartbeats) of a worker process.
DEFAULT_RECOVERY_INTERVAL = 15.0


class CounterLike(Protocol):
    """What the broker needs of a Prometheus counter with `queue` and `actor` labels."""

    def labels(self, *values: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class _Deferred:
    queue_name: str
    redis_message_id: str
    data: bytes


class LosslessRedisBroker(RedisBroker):
    """Dramatiq's Redis broker that returns, retries or dead-letters every message it fetched.

    See the module docstring for what it changes and why. Parameters, besides `RedisBroker`'s:

    - `dead_lettered`: the counter (labels `queue`, `actor`) that counts messages this broker
      dead-letters itself: undecodable ones and those for unknown actors.
    - `recovery_interval`: seconds between two recovery runs of a worker process (default: a
      quarter of the heartbeat timeout, at most 15 s).
    """

    def __init__(
        self,
        *,
        dead_lettered: CounterLike | None = None,
        recovery_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.dead_lettered = dead_lettered
        timeout_seconds = self.heartbeat_timeout / 1000
        self.recovery_interval = recovery_interval or min(DEFAULT_RECOVERY_INTERVAL, timeout_seconds / 4)
        self._lua = {name: self.client.register_script(source) for name, source in SCRIPTS.items()}
        self._held: dict[str, set[str]] = {}
        self._held_lock = threading.Lock()
        self._local = threading.local()
        self._suspects: dict[str, set[str]] = {}
        self._forgotten: set[str] = set()
        self.add_middleware(RecoverySchedule())

    @property
    def consumer_class(self) -> type[LosslessRedisConsumer]:
        return LosslessRedisConsumer

    # -- enqueue: a retry of the message being processed is never lost -----------------------------

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        self._local.enqueuing = message.message_id
        try:
            return super().enqueue(message, delay=delay)
        finally:
            self._local.enqueuing = None

    def do_enqueue(self, queue_name: str, redis_message_id: str, data: bytes) -> None:
        try:
            self._run("enqueue", queue_name, redis_message_id, data)
        except redis.RedisError:
            processing = getattr(self._local, "processing", None)
            if processing is None or processing != getattr(self._local, "enqueuing", None):
                raise  # a producer's send: the caller must know it failed
            # A retry (or delayed re-enqueue) of the message this thread is processing: written
            # together with its ack (see LosslessRedisConsumer.ack), which Dramatiq retries until
            # Redis answers. Until then the original stays in the ack set.
            deferred: list[_Deferred] = self._local.__dict__.setdefault("deferred", [])
            deferred.append(_Deferred(queue_name, redis_message_id, data))
            logger.warning(
                "Redis unavailable: the retry of message %s is written with its ack once Redis answers",
                processing,
                extra={"queue": queue_name},
            )

    def _run(self, command: str, queue_name: str, *args: Any) -> Any:
        return self._dispatch(command)(queue_name, *args)  # type: ignore[no-untyped-call]

    def _script(self, name: str, *args: Any) -> Any:
        return self._lua[name](args=[self.namespace, *args])

    # -- what this process holds --------------------------------------------------------------------

    def _hold(self, queue_name: str, ids: Iterable[str]) -> None:
        with self._held_lock:
            self._held.setdefault(queue_name, set()).update(ids)

    def _release(self, queue_name: str, ids: Iterable[str]) -> None:
        with self._held_lock:
            held = self._held.get(queue_name)
            if held is not None:
                held.difference_update(ids)

    def held(self, queue_name: str) -> set[str]:
        """Redis ids of messages of `queue_name` this process fetched and has not settled."""
        with self._held_lock:
            return set(self._held.get(queue_name, ()))

    def held_count(self, queue_name: str) -> int:
        with self._held_lock:
            return len(self._held.get(queue_name, ()))

    def _take_deferred(self) -> list[_Deferred]:
        deferred: list[_Deferred] = self._local.__dict__.pop("deferred", [])
        return deferred

    # -- recovery -------------------------------------------------------------------------------------

    def _known_queues(self) -> list[str]:
        queues = set(self.get_declared_queues())
        queues |= {dq_name(queue) for queue in queues}
        with self._held_lock:
            queues |= set(self._held)
        return sorted(queues)

    def beat(self) -> None:
        """Refresh this worker's heartbeat."""
        self.client.zadd(f"{self.namespace}:__heartbeats__", {self.broker_id: current_millis()})

    def recover(self) -> tuple[int, int]:
        """One recovery run: reclaim dead workers' ack sets, return what this process lost track of.

        Returns (messages reclaimed from dead workers, own messages returned).
        """
        queues = self._known_queues()
        now = current_millis()
        dead = self.client.zrangebyscore(f"{self.namespace}:__heartbeats__", 0, now - self.heartbeat_timeout)
        reclaimed = 0
        for raw in dead:
            worker = raw.decode() if isinstance(raw, bytes) else str(raw)
            if worker == self.broker_id:
                continue
            returned = int(self._script("reclaim", now, self.heartbeat_timeout, worker, *queues))
            if returned > 0:
                reclaimed += returned
                logger.warning("Returned %d message(s) of stopped worker %s to their queues", returned, worker[:8])
            if returned >= 0 and worker not in self._forgotten:
                self._script("forget", now, self.heartbeat_timeout, worker)
                self._forgotten.add(worker)
        return reclaimed, self._sweep_own(queues)

    def _sweep_own(self, queues: Sequence[str]) -> int:
        returned = 0
        for queue in queues:
            members = self.client.smembers(f"{self.namespace}:__acks__.{self.broker_id}.{queue}")
            in_set = {member.decode() if isinstance(member, bytes) else str(member) for member in members}
            unheld = in_set - self.held(queue)
            stale = unheld & self._suspects.get(queue, set())
            self._suspects[queue] = unheld - stale
            if stale:
                self._run("requeue", queue, *sorted(stale))
                returned += len(stale)
                logger.warning(
                    "Returned %d fetched message(s) this worker had lost track of", len(stale), extra={"queue": queue}
                )
        return returned

    def mark_gone(self) -> None:
        """Tell every worker that this one stopped: whatever it still holds is reclaimed at once."""
        self.client.zadd(f"{self.namespace}:__heartbeats__", {self.broker_id: 0})

    # -- dead letters -----------------------------------------------------------------------------

    def bury(self, queue_name: str, redis_message_id: str, reason: str) -> bool:
        """Move a fetched message to the dead-letter queue with `reason`; False if it was not held."""
        buried = self._script(
            "bury",
            queue_name,
            self.broker_id,
            current_millis(),
            redis_message_id,
            reason[:MAX_REASON_CHARS],
            self.dead_message_ttl,
        )
        self._release(queue_name, [redis_message_id])
        return bool(buried)


class LosslessRedisConsumer(Consumer):
    """Fetches with ids, decodes each message on its own, and returns what it did not deliver."""

    def __init__(self, broker: LosslessRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
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

    def _settle(self, deferred: list[_Deferred], ack_id: str) -> None:
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


class RecoverySchedule(Middleware):
    """Runs `LosslessRedisBroker.recover()` at worker boot and then every `recovery_interval` s.

    Added by the broker itself. Also records which message each worker thread processes (for
    deferred retries) and marks the worker gone after a graceful shutdown.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        if isinstance(broker, LosslessRedisBroker):
            broker._local.processing = message.message_id
            broker._local.__dict__.pop("deferred", None)

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        if not isinstance(broker, LosslessRedisBroker):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(broker,), name="redis-recovery", daemon=True)
        self._thread.start()

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if not isinstance(broker, LosslessRedisBroker):
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            broker.mark_gone()
        except redis.RedisError as error:
            logger.warning(
                "Could not mark this worker gone in Redis (%s): its leftovers return after the heartbeat timeout",
                type(error).__name__,
            )

    def _run(self, broker: LosslessRedisBroker) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                broker.beat()
                broker.recover()
            except redis.RedisError as error:
                if not failing:
                    logger.warning(
                        "Recovery run failed (%s); retrying every %.0fs", type(error).__name__, broker.recovery_interval
                    )
                failing = True
            except Exception:
                logger.exception("Recovery run failed unexpectedly")
            else:
                if failing:
                    logger.info("Recovery runs work again")
                failing = False
            # Jitter, so that the processes of a deployment do not all run at once.
            self._stop.wait(broker.recovery_interval * random.uniform(0.8, 1.0))  # noqa: S311
