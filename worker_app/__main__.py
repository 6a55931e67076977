"""`python -m worker_app`: validate the environment, then run the supervised Dramatiq worker."""

from __future__ import annotations

import sys

from .envparse import ConfigError
from .logs import configure_logging
from .settings import DEFAULT_SERVICE_NAME, load_settings
from .supervisor import EXIT_CONFIG, Supervisor


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        # One line, naming the variable: this is what `kubectl logs` shows for a bad value.
        print(f"{DEFAULT_SERVICE_NAME}: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(
        settings.log_level, settings.log_format, settings.service_name, log_arguments=settings.log_arguments
    )
    return Supervisor(settings).run()


if __name__ == "__main__":
    sys.exit(main())
