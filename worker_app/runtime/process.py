"""The composition root of a process: its settings read once from the environment, its logging, its broker.

Every entry point (`python -m worker_app`, the module the Dramatiq CLI imports, the probe, the
actors' module the API imports) starts here; nothing below reads the environment.
"""

from __future__ import annotations

import functools
import os
import threading

import dramatiq
from dramatiq import Broker

from ..observability.logs import configure_logging
from .settings import Settings

_broker: Broker | None = None
_broker_lock = threading.Lock()


@functools.cache
def process_settings() -> Settings:
    """This process's settings, read from `os.environ` on first use and then kept.

    Raises `ConfigError` (one line naming the variable) for a bad value.
    """
    return Settings.from_env(os.environ)


def setup_logging(settings: Settings) -> None:
    """Configure this process's logging from its settings (every entry point calls this)."""
    configure_logging(
        level=settings.log_level,
        log_format=settings.log_format,
        service_name=settings.service_name,
        log_arguments=settings.log_arguments,
    )


def process_broker() -> Broker:
    """The broker of this process's actors, chosen on first use and then kept.

    - The application's, when it set one with `dramatiq.set_broker()` before the first use (the
      setup guide's order: `dramatiq.set_broker(RedisBroker(url=REDIS_URL))`, then import
      `worker_app.tasks`): the actors are declared on it, so they are sent through it.
    - Otherwise one built from `process_settings()` (`REDIS_*`, this package's middleware), which
      becomes Dramatiq's global broker.

    Dramatiq's global is read directly (`dramatiq.broker.global_broker`): `dramatiq.get_broker()`
    would create a broker to localhost when none was set. A broker set after the first use is not
    seen: set it before importing `worker_app.tasks`.
    """
    # Imported here: the middleware stack loads the OpenTelemetry SDK, which the supervisor (PID 1,
    # no broker of its own) must not carry.
    from .broker import build_broker  # noqa: PLC0415

    global _broker  # noqa: PLW0603 - Dramatiq itself keeps one global broker
    with _broker_lock:
        if _broker is None:
            chosen = application_broker()
            if chosen is None:
                chosen = build_broker(process_settings())
                dramatiq.set_broker(chosen)
            _broker = chosen
        return _broker


def application_broker() -> Broker | None:
    """The broker set with `dramatiq.set_broker()`, if any, without creating one (unlike `dramatiq.get_broker()`)."""
    return dramatiq.broker.global_broker
