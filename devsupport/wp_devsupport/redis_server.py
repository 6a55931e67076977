"""A real `redis-server` on a free loopback port, for one test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from .ports import free_port, wait_for_port
from .processes import ManagedProcess


class RedisServer:
    def __init__(self, workdir: Path, password: str | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed: run `make services` (Debian package redis-server)")
        self.port = free_port()
        self.password = password
        workdir.mkdir(parents=True, exist_ok=True)
        command = [
            executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
        ]  # fmt: skip
        if password:
            command += ["--requirepass", password]
        self.process = ManagedProcess("redis", command, workdir / "redis.log")
        wait_for_port(self.port)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True)

    def stop(self) -> None:
        self.process.stop(timeout=10)
