"""`/healthz` is the container's own health; `/readyz` adds the broker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import requests

from worker_app.runtime.readiness import BROKER_NOT_USED, BROKER_OK, BrokerReadiness
from wp_devsupport.ports import free_port
from wp_devsupport.processes import wait_until
from wp_devsupport.redis_server import RedisServer
from wp_devsupport.worker import WorkerProcess, clean_environment


@dataclass
class FakeReport:
    healthy: bool


class FakeHealth:
    def __init__(self, healthy: bool) -> None:
        self.healthy = healthy

    def report(self) -> FakeReport:
        return FakeReport(self.healthy)


def test_ready_needs_both_health_and_broker():
    calls: list[int] = []

    def ping() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise redis.AuthenticationError("invalid username-password pair")
        return True

    health = FakeHealth(True)
    readiness = BrokerReadiness(health=health, ping=ping, cache_seconds=0)
    first = readiness.report()
    assert (first.ready, first.healthy, first.broker) == (False, True, "AuthenticationError")
    assert b"password" not in first.as_json()
    assert readiness.report().ready
    health.healthy = False
    assert readiness.report().broker == BROKER_OK
    assert not readiness.report().ready


def test_answers_are_reused_within_the_cache_interval():
    calls: list[int] = []
    readiness = BrokerReadiness(health=FakeHealth(True), ping=lambda: calls.append(1), cache_seconds=60)
    for _ in range(5):
        assert readiness.report().ready
    assert len(calls) == 1


def test_without_a_broker_ready_is_healthy():
    assert BrokerReadiness(health=FakeHealth(True), ping=None).report().broker == BROKER_NOT_USED
    assert BrokerReadiness(health=FakeHealth(True), ping=None).report().ready


@pytest.fixture
def worker_processes() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def probe(worker: WorkerProcess, path: str) -> tuple[int, dict[str, object]]:
    response = requests.get(f"{worker.url}{path}", timeout=5)
    return response.status_code, response.json()


@pytest.mark.integration
def test_a_wrong_redis_password_keeps_healthz_200_and_readyz_503(tmp_path, worker_processes):
    server = RedisServer(tmp_path / "redis", password="right-password")
    try:
        env = clean_environment(
            REDIS_URL=f"redis://:wrong-password@127.0.0.1:{server.port}/0",
            WORKER_THREADS="2",
            OTEL_TRACES_EXPORTER="none",
        )
        worker = WorkerProcess(tmp_path, env)
        worker_processes.append(worker)
        worker.wait_healthy()
        assert probe(worker, "/healthz")[0] == 200
        status, body = probe(worker, "/readyz")
        assert status == 503
        assert body == {"status": "not ready", "healthy": True, "broker": "AuthenticationError"}
        assert "wrong-password" not in worker.output()

        good = WorkerProcess(tmp_path, {**env, "REDIS_URL": server.url}, name="good")
        worker_processes.append(good)
        good.wait_healthy()
        wait_until(lambda: probe(good, "/readyz")[0] == 200, 20, message="/readyz 200 with the right password")
        assert probe(good, "/readyz")[1]["broker"] == "ok"
    finally:
        server.stop()


@pytest.mark.integration
def test_redis_down_at_start_is_healthy_but_not_ready(tmp_path, worker_processes):
    port = free_port()
    env = clean_environment(REDIS_URL=f"redis://127.0.0.1:{port}/0", WORKER_THREADS="2", OTEL_TRACES_EXPORTER="none")
    worker = WorkerProcess(tmp_path, env)
    worker_processes.append(worker)
    worker.wait_healthy()
    status, body = probe(worker, "/readyz")
    assert (status, body["broker"]) == (503, "ConnectionError")
    assert probe(worker, "/healthz")[0] == 200
