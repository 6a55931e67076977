"""The recovery schedule of the lossless Redis broker: no ack set outlives its worker for long.

Dramatiq's `RedisBroker` returns the ack sets of dead workers during "maintenance", which runs on
one command in a thousand, and beats a worker's heartbeat only when it fetches. `RecoverySchedule`
runs the broker's recovery (fixes 4 and 5 of `redis_delivery.py`) on a clock instead: a thread in
each worker process beats the heartbeat, reclaims dead workers' ack sets and returns this
process's own lost fetches at boot and every `recovery_interval` seconds, and the worker marks
itself gone at a graceful shutdown. It also records which message each worker thread processes,
which the broker needs to defer a retry that Redis refused (fix 2).
"""

from __future__ import annotations

import logging
import random
import threading
from typing import TYPE_CHECKING

import redis
from dramatiq import Middleware
from dramatiq.broker import MessageProxy

from .redis_holding import HoldingRedisBroker

if TYPE_CHECKING:
    from dramatiq import Broker, Worker

logger = logging.getLogger("worker_app.delivery")


class RecoverySchedule(Middleware):
    """Runs `LosslessRedisBroker.recover()` at worker boot and then every `recovery_interval` s.

    Added by the broker itself, so there is nothing to configure: it takes no parameters, and the
    interval is the broker's `recovery_interval` (by default a quarter of the heartbeat timeout, at
    most 15 s; each wait shortened by up to a fifth at random, so that the processes of a deployment
    spread out). On a broker without the lossless layer (`HoldingRedisBroker`) it does nothing.
    Its hooks:

    - `after_worker_boot`: starts the `redis-recovery` thread (beat, then recover, until shutdown);
      a failing run is logged once and retried on the schedule.
    - `before_process_message`: records the message this worker thread processes, for retries
      that must wait for its ack (`LosslessRedisBroker.do_enqueue`).
    - `after_worker_shutdown`: stops the thread and marks the worker gone in Redis.

    Example (what `LosslessRedisBroker.__init__` does)::

        broker.add_middleware(RecoverySchedule())
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        if isinstance(broker, HoldingRedisBroker):
            broker._local.processing = message.message_id
            broker._local.__dict__.pop("deferred", None)

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        if not isinstance(broker, HoldingRedisBroker):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(broker,), name="redis-recovery", daemon=True)
        self._thread.start()

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if not isinstance(broker, HoldingRedisBroker):
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

    def _run(self, broker: HoldingRedisBroker) -> None:
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
