"""Fixtures of the observability tests; the helpers live in wp_devsupport.observability."""

from __future__ import annotations

from typing import Any

import pytest

from wp_devsupport.observability import committed_dashboards


@pytest.fixture(scope="session")
def boards() -> dict[str, dict[str, Any]]:
    """chart/dashboards/*.json, parsed, by file name."""
    return committed_dashboards()
