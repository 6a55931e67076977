"""The broker's stack of Redis connections (`runtime.redis_connections`), against a real redis-server."""

from __future__ import annotations

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
from worker_app.runtime.redis_connections import ConnectionStack
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


def client_id(keys: list[Any], args: list[Any], client: redis.Redis | None = None) -> int:
    """Stands in for a Lua script (which may not run CLIENT ID): the id of the connection it is given."""
    assert client is not None
    return int(client.client_id())


def current_id(connections: ConnectionStack) -> int:
    """The id of the connection the stack hands the next command."""
    return int(connections.run(client_id, keys=[], args=[]))  # type: ignore[arg-type]


class TestConnectionStack:
    def test_commands_one_after_another_share_one_connection_whatever_the_thread(self, client):
        connections = ConnectionStack(client=client)
        first = current_id(connections)
        # Threads that come and go (an API's request threads) take the idle one: no new connection.
        assert [in_thread(lambda: current_id(connections)) for _ in range(5)] == [first] * 5
        assert current_id(connections) == first
        assert connections.idle() == 1

    def test_commands_at_the_same_time_never_share_one(self, client):
        connections = ConnectionStack(client=client)
        # Four commands take their connections before any of them gives one back.
        everyone_took = threading.Barrier(4)
        take = connections._idle.pop

        class Idle(list):  # type: ignore[type-arg]
            def pop(self, *args: Any) -> Any:
                try:
                    return take(*args)
                finally:
                    everyone_took.wait(5)

        connections._idle = Idle()
        ids: list[int] = []
        threads = [threading.Thread(target=lambda: ids.append(current_id(connections))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(set(ids)) == 4
        assert connections.idle() == 4  # all four back, for the commands that follow

    def test_a_command_that_raised_leaves_its_connection_closed(self, client):
        connections = ConnectionStack(client=client)
        failing = client.register_script("return redis.error_reply('no')")
        first = current_id(connections)
        with pytest.raises(redis.ResponseError):
            connections.run(failing, keys=[], args=[])
        assert connections.idle() == 0  # not handed to the next command...
        assert first not in {entry["id"] for entry in client.client_list()}  # ...and closed
        assert current_id(connections) != first

    def test_a_forked_child_opens_its_own_and_leaves_the_parents_alone(self, client):
        connections = ConnectionStack(client=client)
        parent_id = current_id(connections)
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report the id of its connection, then leave without cleanup
            try:
                os.write(writer, str(current_id(connections)).encode())
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
        assert current_id(connections) == parent_id

    def test_a_connection_redis_closed_is_opened_again_on_the_next_command(self, redis_server):
        shared = redis_client(Settings.from_env({"REDIS_URL": redis_server.url}))
        connections = ConnectionStack(client=shared)
        killed = current_id(connections)
        redis.Redis(host="127.0.0.1", port=redis_server.port).client_kill_filter(_id=killed)
        # Not probed before the command: redis-py's retry opens it again and sends the script again.
        assert current_id(connections) not in (0, killed)
        assert connections.idle() == 1

    def test_a_client_that_is_not_plain_redis_is_used_as_it_is(self, client):
        class Custom(redis.Redis):
            pass

        custom = Custom(connection_pool=client.connection_pool)
        connections = ConnectionStack(client=custom)
        one = custom.register_script("return 1")
        assert connections.run(one, keys=[], args=[]) == 1  # on the client's own pool
        assert connections.idle() == 0


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
    def test_deliveries_open_connections_per_thread_at_most_not_per_message(self, broker, monkeypatch):
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
        # A connection is opened only when every one is in use: at most one per thread that runs the
        # broker's scripts at once (worker threads ack, consumers fetch), however many messages they
        # handled; with the pool per command it was one checkout per message.
        opened = sum(count for (name, _), count in checkouts.items() if name in _DELIVERY_THREADS)
        assert 1 <= opened <= threads + len(worker.consumers), checkouts
        assert broker._connections.idle() >= opened  # every one given back


#: Dramatiq's thread classes that run deliveries: the worker threads and the queues' consumers.
_DELIVERY_THREADS = ("WorkerThread", "ConsumerThread")
