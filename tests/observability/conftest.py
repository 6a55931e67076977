"""Fixtures of the observability tests; the helpers live in observability_support.py."""

from __future__ import annotations

from typing import Any

import pytest
from observability_support import committed_dashboards


@pytest.fixture(scope="session")
def boards() -> dict[str, dict[str, Any]]:
    """chart/dashboards/*.json, parsed, by file name."""
    return committed_dashboards()
