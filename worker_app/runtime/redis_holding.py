"""The broker side of lossless delivery: what this process holds, deferred retries, recovery runs.

`HoldingRedisBroker` is Dramatiq's `RedisBroker` with the state and Redis commands that
`LosslessRedisConsumer` (`redis_consumer.py`) and `RecoverySchedule` (`recovery.py`) use.
`LosslessRedisBroker` (`redis_delivery.py`) adds those two; this layer is separate so that they
can name their broker without importing the module that wires them (no import cycle). It keeps,
per process: the Redis ids fetched and not settled, per queue (`held`); per worker thread, the
message it processes and the enqueues of it Redis refused, written with its ack (fix 2); and what
the recovery runs remember (dead workers already reclaimed, own unheld ids seen last run).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.message import Message

from .redis_connections import ConnectionStack
from .redis_scripts import SCRIPTS

logger = logging.getLogger("worker_app.delivery")

#: Longest reason stored with a dead letter and logged.
MAX_REASON_CHARS = 300
#: Default seconds between two recovery runs (and heartbeats) of a worker process.
DEFAULT_RECOVERY_INTERVAL = 15.0


class CounterLike(Protocol):
    """What the broker needs of a Prometheus counter with `queue` and `actor` labels."""

    def labels(self, *values: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Deferred:
    """An enqueue deferred until Redis answers: written with the ack of the message being processed."""

    queue_name: str
    redis_message_id: str
    data: bytes


class HoldingRedisBroker(RedisBroker):
    """Dramatiq's Redis broker that knows what its process fetched, and settles, buries and recovers.

    Not used alone: `LosslessRedisBroker` subclasses it with its consumer and recovery schedule.
    Parameters, keyword-only, besides those of `RedisBroker` (`url`, `client`, `namespace`,
    `heartbeat_timeout`, `dead_message_ttl`, ...):

    - `dead_lettered`: the counter (labels `queue`, `actor`) that counts messages this broker
      dead-letters itself: undecodable ones and those for unknown actors. `None`: not counted.
    - `recovery_interval`: seconds between two recovery runs of a worker process (default: a
      quarter of the heartbeat timeout, at most `DEFAULT_RECOVERY_INTERVAL`, 15 s).

    Example (what the consumer and the schedule do with it)::

        broker = LosslessRedisBroker(client=redis.Redis(), heartbeat_timeout=60_000)
        broker.held("default")            # {"3f1c...", ...}: fetched by this process, not settled
        broker.bury("default", redis_id, "not a JSON object (a list)")
        broker.beat(); broker.recover()   # (reclaimed from dead workers, own ids returned)
        broker.mark_gone()                # at shutdown: whatever is left is reclaimed at once
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
        self._connections = ConnectionStack(client=self.client)
        self._held: dict[str, set[str]] = {}
        self._held_lock = threading.Lock()
        self._local = threading.local()
        self._suspects: dict[str, set[str]] = {}
        self._forgotten: set[str] = set()

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
            deferred: list[Deferred] = self._local.__dict__.setdefault("deferred", [])
            deferred.append(Deferred(queue_name, redis_message_id, data))
            logger.warning(
                "Redis unavailable: the retry of message %s is written with its ack once Redis answers",
                processing,
                extra={"queue": queue_name},
            )

    def _run(self, command: str, queue_name: str, *args: Any) -> Any:
        """Dramatiq's dispatch script, with the arguments of its own `_dispatch`, on a stack connection."""
        arguments = [
            command,
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            self._should_do_maintenance(command),
            self._max_unpack_size(),  # type: ignore[no-untyped-call]
            *args,
        ]
        return self._connections.run(self.scripts["dispatch"], keys=[self.namespace], args=arguments)

    def _script(self, name: str, *args: Any) -> Any:
        return self._connections.run(self._lua[name], keys=[], args=[self.namespace, *args])

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

    def _take_deferred(self) -> list[Deferred]:
        deferred: list[Deferred] = self._local.__dict__.pop("deferred", [])
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
