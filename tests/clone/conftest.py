"""Two real WordPress sites (Debian's packages, MariaDB, PHP's built-in server) for the clone tests.

The sites are installed and seeded once per session (ci/wordpress/sites.py); each test that writes
gets the target back in its freshly seeded state (`fresh_target`, a table copy, well under a second).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from worker_app.wordpress import CloneSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_sites_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wp_fixture_sites", REPO_ROOT / "ci" / "wordpress" / "sites.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sites_module = _load_sites_module()


@pytest.fixture(scope="session")
def wp_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    started = time.monotonic()
    with sites_module.running_sites(tmp_path_factory.mktemp("wordpress")) as sites:
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


def clone_env(sites: Any, **overrides: str) -> dict[str, str]:
    """The worker environment the clone needs for the two loopback sites."""
    source, target = sites.source, sites.target
    env = {
        "CLONE_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CLONE_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "CLONE_HTTP_TIMEOUT": "20",
        "CLONE_HTTP_RETRIES": "2",
        "CLONE_HTTP_BACKOFF": "0.05",
        f"WORDPRESS_AUTH_127_0_0_1_{source.port}": f"{source.username}:{source.application_password}",
        f"WORDPRESS_AUTH_127_0_0_1_{target.port}": f"{target.username}:{target.application_password}",
    }
    env.update(overrides)
    return env


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
