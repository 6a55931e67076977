"""Two real WordPress sites (Debian's packages, MariaDB, PHP's built-in server) for the clone tests.

The sites are installed and seeded once per session (wp_devsupport.wordpress.sites); each test that writes
gets the target back in its freshly seeded state (`fresh_target`, a table copy, well under a second).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from worker_app.wordpress import CloneSettings
from wp_devsupport.wordpress.sites import clone_env, running_sites


@pytest.fixture(scope="session")
def wp_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    started = time.monotonic()
    with running_sites(tmp_path_factory.mktemp("wordpress")) as sites:
        # Reported in the test output (-ra shows nothing for passing tests, so say it on stderr).
        print(
            f"\n[wordpress] fixture ready in {time.monotonic() - started:.1f} s "
            f"(sites {sites.source.url} -> {sites.target.url})",
            file=sys.stderr,
        )
        yield sites


@pytest.fixture
def fresh_target(wp_sites: Any) -> Any:
    """The sites, with the target restored to its seeded state (only its admin and one author)."""
    wp_sites.target.restore()
    return wp_sites


@pytest.fixture
def settings(wp_sites: Any) -> CloneSettings:
    return CloneSettings.from_env(clone_env(wp_sites))


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """Spans of this process: the global provider gets an in-memory exporter (set once per process)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    span_exporter.clear()
    return span_exporter
