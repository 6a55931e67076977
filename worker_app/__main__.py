"""`python -m worker_app`: validate the environment, then run the supervised Dramatiq worker."""

from __future__ import annotations

import sys

from .config.envparse import ConfigError
from .runtime.process import process_settings, setup_logging
from .runtime.settings import DEFAULT_SERVICE_NAME
from .runtime.supervisor import EXIT_CONFIG, Supervisor


def main() -> int:
    try:
        settings = process_settings()
    except ConfigError as error:
        # One line, naming the variable: this is what `kubectl logs` shows for a bad value.
        print(f"{DEFAULT_SERVICE_NAME}: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings)
    return Supervisor(settings=settings).run()


if __name__ == "__main__":
    sys.exit(main())
