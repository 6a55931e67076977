"""The e2e stack for the whole module, with every process's log attached to a failing test's report."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wp_devsupport.stack import Stack, require_tools


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        require_tools("otelcol", "prometheus")
    except FileNotFoundError as error:
        pytest.fail(str(error))
    started = Stack(tmp_path_factory.mktemp("e2e"))
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def attach_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "report_call", None)
    # Only the tests of the shared stack: the demo's test runs its own and attaches its logs itself.
    if report is not None and report.failed and "stack" in request.fixturenames:
        stack: Stack = request.getfixturevalue("stack")
        for name, path in stack.logs().items():
            tail = path.read_text(encoding="utf-8", errors="replace")[-20_000:]
            report.sections.append((f"log: {name}", tail))
