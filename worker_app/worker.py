"""The module the Dramatiq CLI imports in every worker process: logging, the broker, the actors."""

from __future__ import annotations

from .logs import configure_logging
from .settings import load_settings

_settings = load_settings()
# Each worker process configures its own logging: with the forkserver start method (Python 3.14+)
# nothing is inherited from the parent.
configure_logging(
    _settings.log_level, _settings.log_format, _settings.service_name, log_arguments=_settings.log_arguments
)

from .tasks import broker  # noqa: E402 - logging first, so broker and actor setup logs are JSON

__all__ = ["broker"]
