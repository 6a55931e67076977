"""Runs Dramatiq's CLI with this package's logging; started by `python -m worker_app`, not by hand."""

from __future__ import annotations

import sys

from dramatiq.cli import main

from .runtime.process import process_settings, setup_logging

if __name__ == "__main__":
    setup_logging(process_settings())
    sys.exit(main())
