"""Faults an operator meets, against `python -m worker_app` (2 processes x 8 threads) and a real Redis
with an append-only file: thousands of `ping` jobs each, counted from the AOF (see fault_support).

Each test fails on any lost job. Jobs run more than once are reported, and bounded where the
delivery guarantee says they cannot happen (README, "Delivery guarantees").
"""

from __future__ import annotations

import json
import re
import time

import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message

from wp_devsupport.faults import (
    NS,
    QUEUE,
    kill,
    ping_message,
    probe_count,
    send_pings,
    start_worker,
    tally,
    wait_drained,
    where_are,
    worker_pids,
)
from wp_devsupport.otlp_receiver import OtlpReceiver
from wp_devsupport.ports import free_port
from wp_devsupport.processes import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration]

JOBS = 3000
THREADS = 8
#: A job that takes a little while, so that every thread is busy when the fault strikes.
HOLD = 0.01
#: Seconds Redis stays down in the restart test.
DOWN = 10


def test_sigterm_mid_run_returns_everything_and_a_restart_finishes_the_rest(aof_redis, workers, tmp_path):
    """Three rollouts in a row: each stop strands nothing, and the last worker finishes the rest."""
    started = time.monotonic()
    nonces = send_pings(aof_redis, JOBS, hold_seconds=3 * HOLD)
    shutdowns = []
    for cycle in range(1, 4):
        worker = start_worker(tmp_path, aof_redis, name=f"worker-{cycle}")
        workers.append(worker)
        wait_until(lambda cycle=cycle: probe_count(aof_redis) >= JOBS * cycle // 6, 120, message="more processed")
        status, seconds = worker.stop(timeout=60)
        shutdowns.append(round(seconds, 1))
        assert status == 0, worker.output()[-3000:]
        # Nothing stays in the stopped worker's ack sets: prefetched messages went back to the queue.
        left = where_are(aof_redis)
        assert left["in_ack_sets"] == 0, left
        assert left["ready"] == left["unacked"] > 0

    workers.append(start_worker(tmp_path, aof_redis, name="restarted"))
    wait_drained(aof_redis, 120)
    result = tally("SIGTERM mid-run x3, then restart", aof_redis, nonces, started, shutdown_seconds=shutdowns)
    assert result.lost == 0, result
    assert result.duplicated == 0, result  # a graceful stop finishes running jobs, never repeats one


def test_sigkill_of_a_worker_process_loses_nothing(aof_redis, workers, tmp_path):
    started = time.monotonic()
    nonces = send_pings(aof_redis, JOBS, hold_seconds=HOLD)
    worker = start_worker(tmp_path, aof_redis)
    workers.append(worker)
    wait_until(lambda: probe_count(aof_redis) >= JOBS // 3, 120, message="a third processed")

    kill(worker_pids(worker)[0])
    status = worker.process.wait(timeout=60)
    assert status != 0  # the container restarts
    stranded = where_are(aof_redis)["in_ack_sets"]

    killed_at = time.monotonic()
    workers.append(start_worker(tmp_path, aof_redis, name="restarted"))
    wait_drained(aof_redis, 120)
    result = tally(
        "SIGKILL of a worker process, then restart",
        aof_redis,
        nonces,
        started,
        stranded_by_the_killed_process=stranded,
        back_within_seconds=round(time.monotonic() - killed_at, 1),
    )
    assert result.lost == 0, result
    # Only jobs the killed process had run but not acked can run again: at most one per thread.
    assert result.duplicated <= THREADS, result


def test_a_redis_restart_mid_run_loses_nothing(aof_redis, workers, tmp_path):
    started = time.monotonic()
    nonces = send_pings(aof_redis, JOBS, hold_seconds=HOLD)
    worker = start_worker(tmp_path, aof_redis)
    workers.append(worker)
    wait_until(lambda: probe_count(aof_redis) >= JOBS // 3, 120, message="a third processed")

    aof_redis.stop()
    time.sleep(DOWN)  # longer than the Redis client's own retries: jobs fail and are retried
    aof_redis.start()

    wait_drained(aof_redis, 150)
    assert worker.process.running(), worker.output()[-3000:]
    deferred = worker.output().count("Redis unavailable: the retry of message")
    result = tally(
        f"Redis restart mid-run (down {DOWN} s)", aof_redis, nonces, started, retries_written_with_their_ack=deferred
    )
    assert result.lost == 0, result
    assert where_are(aof_redis)["dead"] == 0


def test_a_collector_outage_costs_no_job_and_every_span_is_exported_or_counted(aof_redis, workers, tmp_path):
    sink = OtlpReceiver(port=free_port())
    try:
        started = time.monotonic()
        nonces = send_pings(aof_redis, JOBS, hold_seconds=HOLD)
        worker = start_worker(
            tmp_path,
            aof_redis,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint,
            OTEL_EXPORTER_OTLP_TIMEOUT="2",
            OTEL_BSP_SCHEDULE_DELAY="200",
        )
        workers.append(worker)
        wait_until(lambda: probe_count(aof_redis) >= JOBS // 4, 120, message="a quarter processed")
        sink.stop()
        outage_started = time.monotonic()
        wait_until(lambda: probe_count(aof_redis) >= JOBS * 3 // 4, 120, message="half more processed while down")
        time.sleep(max(0.0, 10 - (time.monotonic() - outage_started)))  # at least 10 s down
        outage = time.monotonic() - outage_started
        received_before = sink.received()
        sink.start()
        nonces += send_pings(aof_redis, JOBS // 6, prefix="after")  # jobs after the collector is back
        wait_drained(aof_redis, 120)

        def accounted() -> tuple[float, float, float]:
            samples = worker.scrape()
            ended = sum(
                value
                for (name, _), value in samples.items()
                if name in ("dramatiq_messages_processed_total", "dramatiq_message_retries_total")
            )
            dropped = sum(v for (name, _), v in samples.items() if name == "worker_telemetry_spans_dropped_total")
            return ended, sink.received(), dropped

        wait_until(
            lambda: accounted()[1] + accounted()[2] >= accounted()[0],
            60,
            message="every span exported or counted dropped",
        )
        ended, received, dropped = accounted()
        assert received > received_before  # spans flow again after the outage
        result = tally(
            "Collector outage",
            aof_redis,
            nonces,
            started,
            outage_seconds=round(outage, 1),
            spans_ended=ended,
            spans_exported=received,
            spans_dropped=dropped,
        )
        assert result.lost == 0, result
        assert result.duplicated == 0, result
        assert received + dropped == ended, (received, dropped, ended)
    finally:
        sink.stop()


SECRET = "pa55-w0rd-in-an-argument"
UNDECODABLE = {
    "not-json": b"\x00\x01 not json",
    "no-fields": json.dumps({"hello": "world"}).encode(),
    "array": json.dumps(["ping", {"nonce": "x"}]).encode(),
    "ten-megabytes": b"\xfe" * (10 * 1024 * 1024),
    "wrong-types": json.dumps(
        {
            "queue_name": QUEUE,
            "actor_name": "ping",
            "args": f"http://user:{SECRET}@h/",
            "kwargs": [],
            "options": {},
            "message_id": "m",
            "message_timestamp": 0,
        }
    ).encode(),
}
#: Decodable messages whose arguments cannot fit `ping`: each a permanent failure.
BAD_ARGUMENTS = {
    "too-many": ((1, 2, 3), {}),
    "unknown-name": ((), {"nonce": "ok", "colour": "red"}),
    "wrong-type": ((), {"hold_seconds": "long"}),
    "credentials": ((f"http://user:{SECRET}@blog.example/",), {}),
}


def test_malformed_messages_next_to_good_ones_are_dead_lettered_and_hold_nothing(aof_redis, workers, tmp_path):
    started = time.monotonic()
    client = aof_redis.client()
    producer = RedisBroker(client=client, namespace=NS, middleware=[])
    nonces = [f"g{index}" for index in range(JOBS)]
    bad = [*UNDECODABLE, "unknown-actor", *BAD_ARGUMENTS]
    spacing = JOBS // len(bad)
    for index, nonce in enumerate(nonces):
        producer.enqueue(ping_message(nonce))
        if index % spacing == 0 and index // spacing < len(bad):
            name = bad[index // spacing]
            if name in UNDECODABLE:
                client.hset(f"{NS}:{QUEUE}.msgs", f"bad-{name}", UNDECODABLE[name])
                client.rpush(f"{NS}:{QUEUE}", f"bad-{name}")
            elif name == "unknown-actor":
                producer.enqueue(Message(queue_name=QUEUE, actor_name="no_such_actor", args=(), kwargs={}, options={}))
            else:
                args, kwargs = BAD_ARGUMENTS[name]
                producer.enqueue(Message(queue_name=QUEUE, actor_name="ping", args=args, kwargs=kwargs, options={}))

    worker = start_worker(tmp_path, aof_redis)
    workers.append(worker)
    wait_drained(aof_redis, 120)
    result = tally("Malformed messages next to good ones", aof_redis, nonces, started, malformed=len(bad))
    assert result.lost == 0, result
    assert result.duplicated == 0, result
    assert where_are(aof_redis)["dead"] == len(bad)
    assert where_are(aof_redis)["in_ack_sets"] == 0  # nothing held back by a bad neighbour
    wait_until(
        lambda: (
            sum(v for (name, _), v in worker.scrape().items() if name == "dramatiq_messages_dead_lettered_total")
            == len(bad)
        ),
        10,
        message="every dead letter counted",
    )
    reason = client.get(f"{NS}:{QUEUE}.XQ.reason:bad-ten-megabytes")
    assert reason == b"not decodable (UnicodeDecodeError)"

    output = worker.output()
    assert SECRET not in output
    assert max(len(line) for line in output.splitlines()) < 8192
    assert len(re.findall(r"Message dead-lettered", output)) == len(UNDECODABLE) + 1  # logged once each
    assert len(re.findall(r"Job dead-lettered", output)) == len(BAD_ARGUMENTS)
