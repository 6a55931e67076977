"""`/readyz`: the worker is healthy and can reach its broker.

`/healthz` answers for the container's own processes (Dramatiq and all its worker processes up) and
never for Redis: a Redis outage must neither restart every worker (liveness) nor take an API pod
out of its Service (the worker runs as the API's sidecar in one deployment mode). `/readyz` adds an
authenticated `PING` to Redis, so that a separate worker Deployment's readiness reflects the broker:
a release with a wrong Redis password or host never becomes ready and its rollout stops there,
while the old pods keep working. Point a worker Deployment's readiness probe at `/readyz` and every
liveness probe (and a sidecar's readiness, if any) at `/healthz`.

Example::

    readiness = BrokerReadiness(health=health, ping=lambda: client.ping())
    report = readiness.report()      # ReadinessReport(ready=False, broker="AuthenticationError", ...)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

#: `broker` value of a report when the broker answered.
BROKER_OK = "ok"
#: `broker` value when there is no broker to ask (the stub broker).
BROKER_NOT_USED = "not used"


class _Health(Protocol):
    def report(self) -> _HealthReport: ...


class _HealthReport(Protocol):
    @property
    def healthy(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    ready: bool
    healthy: bool
    broker: str

    def as_json(self) -> bytes:
        return json.dumps(
            {"status": "ready" if self.ready else "not ready", "healthy": self.healthy, "broker": self.broker}
        ).encode()


class BrokerReadiness:
    """Ready when `health` is healthy and `ping` returns.

    Parameters (keyword-only):

    - `health`: the container's health (`WorkerHealth`).
    - `ping`: checks the broker and raises when it cannot be used (`redis.Redis.ping` of a client
      with short timeouts and no retries); None when there is no broker to check.
    - `cache_seconds`: how long an answer is reused, so probes of many containers at once, or a
      probe that retries, cost Redis one PING at most per interval.

    The report names only the error's class (`ConnectionError`, `AuthenticationError`), never a
    message that could hold an address or a credential.
    """

    def __init__(self, *, health: _Health, ping: Callable[[], object] | None, cache_seconds: float = 1.0) -> None:
        self._health = health
        self._ping = ping
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, str] | None = None

    def report(self) -> ReadinessReport:
        healthy = self._health.report().healthy
        broker = self._broker_state()
        return ReadinessReport(ready=healthy and broker in (BROKER_OK, BROKER_NOT_USED), healthy=healthy, broker=broker)

    def _broker_state(self) -> str:
        if self._ping is None:
            return BROKER_NOT_USED
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self._cache_seconds:
                return self._cached[1]
            try:
                self._ping()
            except Exception as error:
                state = type(error).__name__
            else:
                state = BROKER_OK
            self._cached = (time.monotonic(), state)
            return state
