"""One Redis connection per thread for deliveries (`runtime.redis_connections`), against a real redis-server."""

from __future__ import annotations

import gc
import os
import select
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import redis
from prometheus_client import CollectorRegistry

from worker_app.observability.metrics import PrometheusMetrics
from worker_app.runtime.broker import build_broker, redis_client
from worker_app.runtime.redis_connections import ThreadConnections
from worker_app.runtime.redis_delivery import LosslessRedisBroker
from worker_app.runtime.settings import Settings
from wp_devsupport.processes import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_server) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=redis_server.port)


def in_thread(call: Callable[[], Any]) -> Any:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()))
    thread.start()
    thread.join(10)
    assert result, "the thread did not finish"
    return result[0]


class TestThreadConnections:
    def test_each_thread_keeps_its_own_connection(self, client):
        connections = ThreadConnections(client=client)

        def two_ids() -> tuple[int, int]:
            return connections.client().client_id(), connections.client().client_id()

        first, second = in_thread(two_ids)
        assert first == second  # the same connection for every command of the thread
        assert connections.client() is connections.client()

    def test_threads_running_at_once_never_share_one(self, client):
        connections = ThreadConnections(client=client)
        barrier = threading.Barrier(4)
        ids: list[int] = []

        def run() -> None:
            own = connections.client()
            barrier.wait(5)  # all four hold theirs at the same time
            ids.append(own.client_id())

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(set(ids)) == 4

    def test_a_finished_threads_connection_goes_back_to_the_pool(self, client):
        connections = ThreadConnections(client=client)
        first = in_thread(lambda: connections.client().client_id())
        gc.collect()
        # The next thread is handed the connection the first one gave back (not a new one).
        assert in_thread(lambda: connections.client().client_id()) == first
        assert client.client_id() == first  # the shared client's pool has it too

    def test_a_forked_child_opens_its_own_and_leaves_the_parents_alone(self, client):
        connections = ThreadConnections(client=client)
        parent_id = connections.client().client_id()
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report the id of its connection, then leave without cleanup
            try:
                os.write(writer, str(connections.client().client_id()).encode())
            finally:
                os._exit(0)
        os.close(writer)
        ready, _, _ = select.select([reader], [], [], 10)
        if not ready:  # never hang the suite on a stuck child
            os.kill(pid, signal.SIGKILL)
        child_id = int(os.read(reader, 64) or b"0") if ready else 0
        os.close(reader)
        os.waitpid(pid, 0)
        assert child_id not in (0, parent_id)
        # The parent's socket was not shut down by the child (same connection, still answering).
        assert connections.client().client_id() == parent_id

    def test_a_killed_connection_is_opened_again_on_the_next_command(self, redis_server):
        connections = ThreadConnections(client=redis_client(Settings.from_env({"REDIS_URL": redis_server.url})))
        own = connections.client()
        killed = own.client_id()
        redis.Redis(host="127.0.0.1", port=redis_server.port).client_kill_filter(_id=killed)
        assert own.ping()  # redis-py's retry reconnects, as with a pooled connection
        assert own.client_id() != killed
        assert connections.client() is own

    def test_a_client_that_is_not_plain_redis_is_used_as_it_is(self, client):
        class Custom(redis.Redis):
            pass

        custom = Custom(connection_pool=client.connection_pool)
        connections = ThreadConnections(client=custom)
        assert connections.client() is custom
        assert in_thread(connections.client) is custom


@pytest.fixture
def broker(redis_server) -> Iterator[LosslessRedisBroker]:
    redis.Redis(host="127.0.0.1", port=redis_server.port).flushdb()
    built = build_broker(
        Settings.from_env({"REDIS_URL": redis_server.url}), metrics=PrometheusMetrics(registry=CollectorRegistry())
    )
    assert isinstance(built, LosslessRedisBroker)
    yield built
    built.close()


class TestBrokerConnections:
    def test_acks_do_not_check_a_connection_out_per_message(self, broker, monkeypatch):
        done: list[int] = []

        @dramatiq.actor(broker=broker, queue_name="connections")
        def job(n: int) -> None:
            done.append(n)

        messages, threads = 60, 4
        for n in range(messages):
            job.send(n)
        pool = broker.client.connection_pool
        checkouts: Counter[tuple[str, int]] = Counter()
        original = pool.get_connection

        def counted(*args: Any, **kwargs: Any) -> Any:
            thread = threading.current_thread()
            checkouts[type(thread).__name__, thread.ident or 0] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(pool, "get_connection", counted)
        worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=threads)
        worker.start()
        try:
            wait_until(lambda: len(done) == messages, 20, message="every message ran")
            wait_until(lambda: broker.client.hlen("dramatiq:connections.msgs") == 0, 10, message="every ack")
        finally:
            worker.stop(timeout=5_000)
        assert sorted(done) == list(range(messages))
        # Each worker thread (which acks) and consumer thread (which fetches) checked a connection out
        # once, however many messages it handled: with the pool per command it was one per message.
        delivery_threads = {key: count for key, count in checkouts.items() if key[0] in _DELIVERY_THREADS}
        assert delivery_threads, checkouts
        assert set(delivery_threads.values()) == {1}, checkouts
        assert sum(1 for name, _ in delivery_threads if name == "WorkerThread") <= threads


#: Dramatiq's thread classes that run deliveries: the worker threads and the queues' consumers.
_DELIVERY_THREADS = ("WorkerThread", "ConsumerThread")
