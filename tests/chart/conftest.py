"""pytest hooks of the chart tests; the helpers live in chart_support.py."""

from __future__ import annotations

import pytest
from chart_support import cleanup


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    cleanup()
