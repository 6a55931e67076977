"""Lossless delivery on Dramatiq's Redis broker: nothing fetched is ever dropped or stranded.

Dramatiq's `RedisBroker` keeps every fetched message in an ack set (`__acks__.<worker>.<queue>`)
until it is acked, and returns the ack sets of workers whose heartbeat is older than
`heartbeat_timeout` to their queues, but only during "maintenance", which runs on one command in
a thousand. Measured against a real worker, that left messages behind in five ways; each is fixed
in a subclass (the modules below), and each belongs in Dramatiq itself (`dramatiq/brokers/redis.py`):

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

Where each part lives (in `worker_app/runtime/`; in Dramatiq, all of it would be `RedisBroker` and
`_RedisConsumer` in `brokers/redis.py`, with the Lua beside `brokers/redis/dispatch.lua`):

- `redis_delivery.py` (this module): `LosslessRedisBroker`, which puts the parts together.
- `redis_holding.py`: `HoldingRedisBroker`, the broker's side: what this process holds, deferred
  retries (fix 2), burying (fix 3), the recovery run itself (fixes 4, 5).
- `redis_consumer.py`: `LosslessRedisConsumer`: fetches with ids, delivers or buries each message,
  acks with the deferred retries, returns what it holds on close (fixes 1, 2, 3).
- `redis_scripts.py`: the Lua scripts (`fetch`, `bury`, `settle`, `reclaim`, `forget`).
- `redis_connections.py`: `ConnectionStack`, the connections the scripts run on, without the pool
  checkout of each command (not a fix: it was about 40% of the context switches of a message).
- `recovery.py`: `RecoverySchedule`, the middleware that runs the recovery on a clock (fixes 4, 5);
  in Dramatiq, the same clock would drive the broker's maintenance.
- `message_decoding.py`: `decode_message` and the reasons for refusing a message (fix 3).

Example::

    broker = LosslessRedisBroker(client=redis.Redis(), dead_lettered=metrics.dead_lettered,
                                 heartbeat_timeout=60_000)
"""

from __future__ import annotations

from typing import Any

from .recovery import RecoverySchedule
from .redis_consumer import LosslessRedisConsumer
from .redis_holding import CounterLike, HoldingRedisBroker


class LosslessRedisBroker(HoldingRedisBroker):
    """Dramatiq's Redis broker that returns, retries or dead-letters every message it fetched.

    See the module docstring for what it changes and why. It consumes with
    `LosslessRedisConsumer` and adds `RecoverySchedule` to its middleware itself. Parameters,
    keyword-only, besides those of `RedisBroker` (`url`, `client`, `namespace`,
    `heartbeat_timeout`, `dead_message_ttl`, `middleware`, ...):

    - `dead_lettered`: the counter (labels `queue`, `actor`) that counts messages this broker
      dead-letters itself: undecodable ones and those for unknown actors. `None`: not counted.
    - `recovery_interval`: seconds between two recovery runs of a worker process (default: a
      quarter of the heartbeat timeout, at most 15 s).

    Example::

        broker = LosslessRedisBroker(url="redis://redis:6379/0", dead_lettered=metrics.dead_lettered)
        dramatiq.set_broker(broker)
        Worker(broker, worker_threads=8).start()   # recovery thread starts with the worker
    """

    def __init__(
        self,
        *,
        dead_lettered: CounterLike | None = None,
        recovery_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dead_lettered=dead_lettered, recovery_interval=recovery_interval, **kwargs)
        self.add_middleware(RecoverySchedule())

    @property
    def consumer_class(self) -> type[LosslessRedisConsumer]:
        return LosslessRedisConsumer
