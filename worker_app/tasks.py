"""The actors. The API imports this module to enqueue (`clone_wordpress.send(...)`); so does the worker.

The actors are declared on `runtime.process.process_broker()`: the broker the application set with
`dramatiq.set_broker()` before importing this module (the setup guide's order), else one built
from the environment (the settings of `worker_app.runtime.settings`), so set the broker or
configure the environment before the first import.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Any

import dramatiq

from .config.queues import CLONE_QUEUE, PING_QUEUE
from .errors import InvalidJobArguments
from .runtime.process import process_broker, process_settings
from .wordpress import parse_clone_request, run_clone

logger = logging.getLogger(__name__)

_settings = process_settings()
broker = process_broker()
#: Clone summaries are stored for WORKER_RESULT_TTL seconds when it is set and the broker has a result
#: backend (this package's broker always has one then; an application's broker may have none, and a
#: process that only enqueues never stores results anyway).
_STORE_RESULTS = _settings.result_ttl > 0 and "store_results" in broker.actor_options

#: Where `ping` records the nonces it saw, for `python -m worker_app.probe` to find.
PROBE_KEY_PREFIX = "wp-k8s-service:probe:"
PROBE_KEY_TTL_SECONDS = 300
MAX_HOLD_SECONDS = 300
_NONCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


_CLONE_OPTIONS: dict[str, Any] = {
    "max_retries": 8,
    "min_backoff": 15_000,
    "max_backoff": 900_000,
    "time_limit": 2 * 3600 * 1000,
    "throws": (InvalidJobArguments,),
}
if _STORE_RESULTS:  # an option Dramatiq only accepts when the Results middleware is there
    _CLONE_OPTIONS["store_results"] = True


@dramatiq.actor(broker=broker, queue_name=CLONE_QUEUE, **_CLONE_OPTIONS)
def clone_wordpress(source_url: str, target_url: str, options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Copy a WordPress site's content from `source_url` to `target_url` (see `worker_app.wordpress`).

    Arguments are validated first: a bad one is a permanent failure (dead-lettered, not retried)
    with a message saying what is wrong. `options` is documented in `worker_app.wordpress.clone_args`.
    The clone's summary is logged and, when WORKER_RESULT_TTL is set, stored as the job's result.
    """
    request = parse_clone_request(source_url, target_url, options)
    logger.info(
        "clone requested",
        extra={"source_url": request.source_url, "target_url": request.target_url, "dry_run": request.options.dry_run},
    )
    summary = run_clone(request, _settings.clone)  # logs the summary itself
    # Without a result backend Dramatiq would warn at every job that the return value is dropped.
    return summary if _STORE_RESULTS else None


@dramatiq.actor(
    broker=broker,
    queue_name=PING_QUEUE,
    max_retries=3,
    min_backoff=1_000,
    max_backoff=10_000,
    time_limit=(MAX_HOLD_SECONDS + 30) * 1000,
    throws=(InvalidJobArguments,),
)
def ping(nonce: str | None = None, hold_seconds: float = 0) -> None:
    """An end-to-end probe: records `nonce` in Redis so the sender can see a worker processed it.

    `hold_seconds` keeps the worker busy first (at most 300), to exercise graceful shutdown and
    queue-driven scaling with a job that is really running.
    """
    if nonce is not None and (not isinstance(nonce, str) or not _NONCE.match(nonce)):
        raise InvalidJobArguments("nonce: expected 1 to 64 letters, digits, '-' or '_'")
    if isinstance(hold_seconds, bool) or not isinstance(hold_seconds, int | float):
        raise InvalidJobArguments("hold_seconds: expected a number of seconds")
    if not 0 <= hold_seconds <= MAX_HOLD_SECONDS:
        raise InvalidJobArguments(f"hold_seconds: must be between 0 and {MAX_HOLD_SECONDS}")
    if hold_seconds:
        time.sleep(hold_seconds)
    if nonce is None:
        logger.info("pong")
        return
    client = getattr(broker, "client", None)
    if client is None:  # the stub broker has no Redis to answer through
        logger.info("pong", extra={"nonce": nonce})
        return
    answer = json.dumps({"pid": os.getpid(), "processed_at": time.time()})
    client.set(f"{PROBE_KEY_PREFIX}{nonce}", answer, ex=PROBE_KEY_TTL_SECONDS)
    logger.info("pong", extra={"nonce": nonce})
