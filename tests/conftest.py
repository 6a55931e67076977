"""Session-wide services: one real redis-server for every suite that needs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wp_devsupport.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    yield server
    server.stop()
