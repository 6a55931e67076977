"""The lossless Redis broker against a real redis-server, with a real in-process Dramatiq Worker."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.message import Message
from prometheus_client import CollectorRegistry

from worker_app.observability.metrics import PrometheusMetrics
from worker_app.runtime.broker import build_broker
from worker_app.runtime.message_decoding import UNDECODABLE_ACTOR, UNKNOWN_ACTOR, decode_message
from worker_app.runtime.redis_delivery import LosslessRedisBroker
from worker_app.runtime.settings import Settings
from wp_devsupport.processes import wait_until

pytestmark = pytest.mark.integration

QUEUE = "lossless"
NS = "dramatiq"


@pytest.fixture
def client(redis_server) -> redis.Redis:
    raw = redis.Redis(host="127.0.0.1", port=redis_server.port)
    raw.flushdb()
    return raw


@pytest.fixture
def broker(redis_server, client) -> Iterator[LosslessRedisBroker]:
    metrics = PrometheusMetrics(registry=CollectorRegistry())
    built = build_broker(Settings.from_env({"REDIS_URL": redis_server.url}), metrics=metrics)
    assert isinstance(built, LosslessRedisBroker)
    built.test_metrics = metrics  # type: ignore[attr-defined]
    yield built
    built.close()


def dead_letter_count(broker: LosslessRedisBroker, actor: str) -> float:
    value = broker.test_metrics.registry.get_sample_value(  # type: ignore[attr-defined]
        "dramatiq_messages_dead_lettered_total", {"queue": QUEUE, "actor": actor}
    )
    return value or 0.0


def start_worker(broker: LosslessRedisBroker, threads: int = 2) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=threads)
    worker.start()
    return worker


def ack_set(client: redis.Redis, broker: LosslessRedisBroker, queue: str = QUEUE) -> set[bytes]:
    return client.smembers(f"{NS}:__acks__.{broker.broker_id}.{queue}")  # type: ignore[return-value]


def test_shutdown_returns_every_prefetched_message(broker, client):
    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def slow(n: int) -> None:
        time.sleep(0.02)
        client.sadd("done", n)

    for n in range(200):
        slow.send(n)
    worker = start_worker(broker, threads=4)  # prefetch 8: most of them wait in the cache
    wait_until(lambda: client.scard("done") >= 20, 30, message="20 processed")
    worker.stop(timeout=10_000)

    assert ack_set(client, broker) == set()
    done = {int(n) for n in client.smembers("done")}  # type: ignore[union-attr]
    queued = client.lrange(f"{NS}:{QUEUE}", 0, -1)
    assert len(queued) + len(done) == 200
    assert client.hlen(f"{NS}:{QUEUE}.msgs") == len(queued)
    # And it tells the others it is gone, so that anything left behind is reclaimed at once.
    assert client.zscore(f"{NS}:__heartbeats__", broker.broker_id) == 0


def push_raw(client: redis.Redis, redis_id: str, data: bytes, queue: str = QUEUE) -> None:
    client.hset(f"{NS}:{queue}.msgs", redis_id, data)
    client.rpush(f"{NS}:{queue}", redis_id)


def good_message(actor: str, n: int, queue: str = QUEUE) -> bytes:
    return Message(queue_name=queue, actor_name=actor, args=(n,), kwargs={}, options={}).encode()


MALFORMED: dict[str, bytes] = {
    "not-json": b"\x00\xffnot json at all",
    "no-fields": json.dumps({"hello": "world"}).encode(),
    "array": json.dumps([1, 2, 3]).encode(),
    "huge": b"\xfe" * (10 * 1024 * 1024),
    "wrong-types": json.dumps(
        {
            "queue_name": QUEUE,
            "actor_name": "record",
            "args": "not a list",
            "kwargs": {},
            "options": {},
            "message_id": "x",
            "message_timestamp": 1,
        }
    ).encode(),
    "other-queue": Message(queue_name="elsewhere", actor_name="record", args=(), kwargs={}, options={}).encode(),
}


def test_malformed_messages_are_dead_lettered_counted_and_never_hold_good_ones(broker, client, caplog):
    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def record(n: int) -> None:
        client.sadd("done", n)

    # Bad ones interleaved with good ones, so that they are fetched in the same batches.
    for index, (name, data) in enumerate(MALFORMED.items()):
        push_raw(client, f"bad-{name}", data)
        push_raw(client, f"good-{index}", good_message("record", index))
    push_raw(client, "bad-unknown-actor", good_message("no_such_actor", 99))
    caplog.set_level(logging.WARNING, logger="worker_app.delivery")

    worker = start_worker(broker)
    try:
        wait_until(lambda: client.scard("done") == len(MALFORMED), 20, message="every good message processed")
        wait_until(lambda: client.zcard(f"{NS}:{QUEUE}.XQ") == len(MALFORMED) + 1, 20, message="all dead-lettered")
    finally:
        worker.stop(timeout=5_000)

    dead = {member.decode() for member in client.zrange(f"{NS}:{QUEUE}.XQ", 0, -1)}  # type: ignore[union-attr]
    assert dead == {f"bad-{name}" for name in MALFORMED} | {"bad-unknown-actor"}
    assert client.hget(f"{NS}:{QUEUE}.XQ.msgs", "bad-huge") == MALFORMED["huge"]  # kept as it was
    reason = client.get(f"{NS}:{QUEUE}.XQ.reason:bad-array")
    assert reason == b"not a JSON object (a list)"
    assert client.pttl(f"{NS}:{QUEUE}.XQ.reason:bad-array") > 0
    assert client.get(f"{NS}:{QUEUE}.XQ.reason:bad-unknown-actor") == b"unknown actor 'no_such_actor'"
    assert dead_letter_count(broker, UNDECODABLE_ACTOR) == len(MALFORMED)
    assert dead_letter_count(broker, UNKNOWN_ACTOR) == 1
    assert ack_set(client, broker) == set()
    assert client.llen(f"{NS}:{QUEUE}") == 0

    lines = [record for record in caplog.records if record.getMessage().startswith("Message dead-lettered")]
    assert len(lines) == len(MALFORMED) + 1  # once each
    assert all(len(record.getMessage()) < 300 for record in lines)


def test_decode_reasons():
    assert decode_message(b"{", QUEUE)[1] == "not decodable (JSONDecodeError)"
    assert decode_message(b'"text"', QUEUE)[1] == "not a JSON object (a str)"
    missing = decode_message(b'{"queue_name": "lossless"}', QUEUE)[1]
    assert missing.startswith("missing message field(s): actor_name, args")
    fields = json.loads(good_message("a", 1))
    assert decode_message(json.dumps({**fields, "extra": 1}).encode(), QUEUE)[1] == "unknown message field(s): extra"
    assert decode_message(json.dumps({**fields, "message_timestamp": True}).encode(), QUEUE)[1] == (
        "field message_timestamp: wrong type bool"
    )
    message, reason, _ = decode_message(good_message("a", 1), QUEUE)
    assert reason == ""
    assert message is not None
    assert tuple(message.args) == (1,)


def test_a_retry_that_cannot_be_enqueued_is_written_with_the_ack(broker, client, monkeypatch):
    attempts: list[int] = []

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=3, min_backoff=10, max_backoff=20)
    def flaky(n: int) -> None:
        attempts.append(n)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        client.sadd("done", n)

    original = broker._run
    failures: list[str] = []

    def run(command: str, queue_name: str, *args: Any) -> Any:
        if command == "enqueue" and threading.current_thread().name != "MainThread" and not failures:
            failures.append(queue_name)
            raise redis.ConnectionError("Redis is down (simulated)")
        return original(command, queue_name, *args)

    monkeypatch.setattr(broker, "_run", run)
    flaky.send(7)
    worker = start_worker(broker)
    try:
        wait_until(lambda: client.sismember("done", 7), 20, message="the retry ran")
    finally:
        worker.stop(timeout=5_000)
    assert failures == [f"{QUEUE}.DQ"]  # the retry's enqueue failed once...
    assert attempts == [7, 7]  # ...and still ran, once
    assert client.hlen(f"{NS}:{QUEUE}.msgs") == 0
    assert client.hlen(f"{NS}:{QUEUE}.DQ.msgs") == 0
    assert client.zcard(f"{NS}:{QUEUE}.XQ") == 0


def test_a_producer_still_sees_its_enqueue_fail(broker, monkeypatch):
    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def anything() -> None:
        pass

    def down(*_args: Any) -> Any:
        raise redis.ConnectionError("down")

    monkeypatch.setattr(broker, "_run", down)
    with pytest.raises(redis.ConnectionError):
        anything.send()


def test_recovery_returns_dead_workers_ack_sets_and_forgets_them(broker, client):
    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def record(n: int) -> None:
        pass

    now = int(time.time() * 1000)
    for name, beat in (("dead-worker", now - 120_000), ("live-worker", now)):
        client.zadd(f"{NS}:__heartbeats__", {name: beat})
        for n in range(3):
            redis_id = f"{name}-{n}"
            client.hset(f"{NS}:{QUEUE}.msgs", redis_id, good_message("record", n))
            client.sadd(f"{NS}:__acks__.{name}.{QUEUE}", redis_id)
    # A delayed message held by the dead worker goes back to the delay queue.
    client.hset(f"{NS}:{QUEUE}.DQ.msgs", "dead-delayed", b"{}")
    client.sadd(f"{NS}:__acks__.dead-worker.{QUEUE}.DQ", "dead-delayed")

    reclaimed, own = broker.recover()

    assert (reclaimed, own) == (4, 0)
    assert sorted(client.lrange(f"{NS}:{QUEUE}", 0, -1)) == [b"dead-worker-0", b"dead-worker-1", b"dead-worker-2"]
    assert client.lrange(f"{NS}:{QUEUE}.DQ", 0, -1) == [b"dead-delayed"]
    assert not client.exists(f"{NS}:__acks__.dead-worker.{QUEUE}")
    assert client.zscore(f"{NS}:__heartbeats__", "dead-worker") is None
    assert client.scard(f"{NS}:__acks__.live-worker.{QUEUE}") == 3  # a live worker keeps its messages


def test_recovery_returns_what_this_process_lost_track_of_on_the_second_run(broker, client):
    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def record(n: int) -> None:
        pass

    # As if a fetch ran on the server but its reply was lost with the connection.
    client.hset(f"{NS}:{QUEUE}.msgs", "lost-reply", good_message("record", 1))
    client.sadd(f"{NS}:__acks__.{broker.broker_id}.{QUEUE}", "lost-reply")
    # And one this process really holds: never touched.
    client.hset(f"{NS}:{QUEUE}.msgs", "held", good_message("record", 2))
    client.sadd(f"{NS}:__acks__.{broker.broker_id}.{QUEUE}", "held")
    broker._hold(QUEUE, ["held"])

    assert broker.recover() == (0, 0)  # a suspect once: could be a fetch whose reply is on its way
    assert broker.recover() == (0, 1)
    assert client.lrange(f"{NS}:{QUEUE}", 0, -1) == [b"lost-reply"]
    assert ack_set(client, broker) == {b"held"}


def test_a_closed_delay_consumer_returns_what_dramatiq_dropped(broker, client):
    """Dramatiq's ConsumerThread empties its in-memory delay queue after a connection error."""

    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def later(n: int) -> None:
        pass

    later.send_with_options(args=(1,), delay=60_000)
    consumer = broker.consume(f"{QUEUE}.DQ", prefetch=10, timeout=100)
    message = next(consumer)
    assert message is not None
    assert message.options["eta"] > 0
    consumer.close()  # the message itself is forgotten, as Dramatiq does
    assert ack_set(client, broker, f"{QUEUE}.DQ") == set()
    assert client.llen(f"{NS}:{QUEUE}.DQ") == 1


def test_close_returns_the_prefetched_messages_not_yet_handed_out(broker, client):
    """Dramatiq's consumer stops between two messages of a fetched batch; the rest stayed stranded."""

    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def record(n: int) -> None:
        pass

    for n in range(10):
        record.send(n)
    consumer = broker.consume(QUEUE, prefetch=10, timeout=100)
    first = next(consumer)  # fetches all ten, hands out one
    assert first is not None
    assert client.scard(f"{NS}:__acks__.{broker.broker_id}.{QUEUE}") == 10
    consumer.close()
    assert ack_set(client, broker) == {first.options["redis_message_id"].encode()}
    assert client.llen(f"{NS}:{QUEUE}") == 9
    assert broker.held(QUEUE) == {first.options["redis_message_id"]}  # still being processed


def test_a_booting_worker_reclaims_a_dead_workers_messages_and_runs_them(broker, client):
    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def record(n: int) -> None:
        client.sadd("done", n)

    # A worker that died two minutes ago while holding three messages.
    client.zadd(f"{NS}:__heartbeats__", {"dead-worker": int(time.time() * 1000) - 120_000})
    for n in range(3):
        client.hset(f"{NS}:{QUEUE}.msgs", f"orphan-{n}", good_message("record", n))
        client.sadd(f"{NS}:__acks__.dead-worker.{QUEUE}", f"orphan-{n}")

    worker = start_worker(broker)
    try:
        wait_until(lambda: client.scard("done") == 3, 10, message="the orphans ran")
        assert client.zscore(f"{NS}:__heartbeats__", broker.broker_id) is not None  # it beats
    finally:
        worker.stop(timeout=5_000)
    assert client.zscore(f"{NS}:__heartbeats__", "dead-worker") is None
