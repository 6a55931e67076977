"""`python -m wp_dashboards [--check] [--output DIR]`, run in chart/dashboards (what `make dashboards` does)."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
