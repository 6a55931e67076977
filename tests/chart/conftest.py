"""pytest hooks of the chart tests; the helpers live in wp_devsupport.chart."""

from __future__ import annotations

import pytest

from wp_devsupport.chart import cleanup


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    cleanup()
