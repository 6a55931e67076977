"""The module the Dramatiq CLI imports in every worker process: logging, the broker, the actors."""

from __future__ import annotations

from .runtime.process import process_settings, setup_logging

# Each worker process configures its own logging: with the forkserver start method (Python 3.14+)
# nothing is inherited from the parent.
setup_logging(process_settings())

from .tasks import broker  # noqa: E402 - logging first, so broker and actor setup logs are JSON

__all__ = ["broker"]
