"""Fixtures of the fault suite: a fresh Redis with an append-only file per test, workers stopped after."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from wp_devsupport.faults import REPORT, AofRedis
from wp_devsupport.worker import WorkerProcess


@pytest.fixture(scope="session", autouse=True)
def _fresh_report() -> None:
    REPORT.unlink(missing_ok=True)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[AofRedis]:
    server = AofRedis(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop(timeout=30)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT.exists():
        terminalreporter.section("fault suite: jobs sent, processed, lost, run more than once")
        for line in REPORT.read_text().splitlines():
            terminalreporter.write_line(json.loads(line)["summary"])
