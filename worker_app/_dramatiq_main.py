"""Runs Dramatiq's CLI with this package's logging; started by `python -m worker_app`, not by hand."""

from __future__ import annotations

import sys

from dramatiq.cli import main

from .logs import configure_logging
from .settings import load_settings

if __name__ == "__main__":
    _settings = load_settings()
    configure_logging(
        _settings.log_level, _settings.log_format, _settings.service_name, log_arguments=_settings.log_arguments
    )
    sys.exit(main())
