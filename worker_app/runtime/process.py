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
    """The process-wide broker, built from `process_settings()` on first use and set as Dramatiq's global."""
    # Imported here: the middleware stack loads the OpenTelemetry SDK, which the supervisor (PID 1,
    # no broker of its own) must not carry.
    from .broker import build_broker  # noqa: PLC0415

    global _broker  # noqa: PLW0603 - Dramatiq itself keeps one global broker
    with _broker_lock:
        if _broker is None:
            _broker = build_broker(process_settings())
            dramatiq.set_broker(_broker)
        return _broker
