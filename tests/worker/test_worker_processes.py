"""Integration: real redis-server, real `python -m worker_app` processes, real OTLP export."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import requests

from wp_devsupport.otlp_receiver import OtlpReceiver
from wp_devsupport.ports import free_port
from wp_devsupport.processes import wait_until
from wp_devsupport.redis_server import RedisServer
from wp_devsupport.worker import WorkerProcess, clean_environment, produce

pytestmark = pytest.mark.integration

PROCESSES = 2
THREADS = 4
SPAN_PRODUCER, SPAN_CONSUMER = 4, 5  # OTLP SpanKind values


@pytest.fixture
def redis_url(redis_server) -> str:
    redis_server.client().flushdb()
    return redis_server.url


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.stop()


@pytest.fixture
def workers(tmp_path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def start_worker(workers, tmp_path, name="worker", **env) -> WorkerProcess:
    settings = {
        "WORKER_PROCESSES": str(PROCESSES),
        "WORKER_THREADS": str(THREADS),
        "WORKER_SHUTDOWN_TIMEOUT": "20",
        "WORKER_TELEMETRY_FLUSH_TIMEOUT": "3",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        **env,
    }
    worker = WorkerProcess(tmp_path, clean_environment(**settings), name=name)
    workers.append(worker)
    worker.wait_healthy()
    return worker


def test_every_message_is_processed_exactly_once_and_traced(redis_url, redis_server, receiver, workers, tmp_path):
    count = 120
    worker = start_worker(workers, tmp_path, REDIS_URL=redis_url, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
    assert worker.scrape()[("dramatiq_worker_processes", ())] == PROCESSES

    jobs = [{"actor": "ping", "args": [f"n{index}"]} for index in range(count)]
    env = clean_environment(REDIS_URL=redis_url, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
    ids = produce(env, jobs)
    assert len(set(ids)) == count

    labels = {"queue": "ping", "actor": "ping", "outcome": "success"}
    wait_until(
        lambda: worker.value("dramatiq_messages_processed_total", **labels) >= count,
        60,
        message=f"{count} pings processed",
    )
    time.sleep(1)  # nothing more may arrive: a duplicate would show up here
    client = redis_server.client()
    assert sorted(client.keys("wp-k8s-service:probe:*")) == sorted(f"wp-k8s-service:probe:n{i}" for i in range(count))
    samples = worker.scrape()
    assert samples[("dramatiq_messages_processed_total", tuple(sorted(labels.items())))] == count
    timing = (("actor", "ping"), ("queue", "ping"))
    assert samples[("dramatiq_message_processing_time_count", timing)] == count
    assert samples[("dramatiq_messages_in_progress", timing)] == 0
    assert samples[("dramatiq_queue_depth", (("queue", "ping"), ("state", "ready")))] == 0
    assert samples[("dramatiq_broker_up", ())] == 1

    # One trace per job: the API's producer span, and the worker's consumer span as its child.
    def traced() -> bool:
        spans = receiver.snapshot()
        consumers = {s.attributes.get("messaging.message.id") for s in spans if s.kind == SPAN_CONSUMER}
        return set(ids) <= consumers

    wait_until(traced, 30, message="consumer spans exported")
    spans = receiver.snapshot()
    producers = {s.attributes["messaging.message.id"]: s for s in spans if s.kind == SPAN_PRODUCER}
    consumers = {s.attributes["messaging.message.id"]: s for s in spans if s.kind == SPAN_CONSUMER}
    for message_id in ids:
        producer, consumer = producers[message_id], consumers[message_id]
        assert producer.name == "send ping"
        assert consumer.name == "process ping"
        assert producer.service_name == "wp-k8s-service"
        assert consumer.service_name == "wp-k8s-service-worker"
        assert consumer.trace_id == producer.trace_id
        assert consumer.parent_span_id == producer.span_id

    # OpenMetrics scrapes carry exemplars: a processing-time bucket links to one of these traces.
    traces = {span.trace_id for span in consumers.values()}

    def exemplar_trace_ids() -> set[str]:
        text = requests.get(
            f"{worker.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=10
        ).text
        return {
            line.split('trace_id="')[1][:32]
            for line in text.splitlines()
            if line.startswith("dramatiq_message_processing_time_bucket") and 'trace_id="' in line
        }

    assert wait_until(exemplar_trace_ids, 15, message="exemplars on the histogram") <= traces


def test_queue_depth_agrees_with_redis(redis_url, redis_server, workers, tmp_path):
    # Dead letters: invalid clone requests are refused for good.
    consuming = start_worker(workers, tmp_path, name="all-queues", REDIS_URL=redis_url, OTEL_SDK_DISABLED="true")
    env = clean_environment(REDIS_URL=redis_url, OTEL_SDK_DISABLED="true")
    produce(env, [{"actor": "clone_wordpress", "args": ["ftp://a", "https://b", {}]} for _ in range(4)])
    wait_until(
        lambda: (
            consuming.value("dramatiq_messages_dead_lettered_total", queue="clone-queue", actor="clone_wordpress") >= 4
        ),
        30,
        message="4 dead letters",
    )
    consuming.stop()

    # A worker that only consumes `ping` still reports every queue; clone-queue now only fills up.
    worker = start_worker(
        workers,
        tmp_path,
        name="ping-only",
        REDIS_URL=redis_url,
        OTEL_SDK_DISABLED="true",
        WORKER_QUEUES="ping",
    )
    produce(env, [{"actor": "clone_wordpress", "args": ["https://a", "https://b", {}]} for _ in range(7)])
    produce(
        env,
        [
            {
                "actor": "clone_wordpress",
                "args": ["https://a", "https://b", {}],
                "options": {"delay": 3_600_000},
            }
        ]
        * 3,
    )
    produce(env, [{"actor": "ping", "kwargs": {"nonce": "held", "hold_seconds": 4}}])
    wait_until(
        lambda: worker.value("dramatiq_messages_in_progress", queue="ping", actor="ping") == 1,
        20,
        message="held ping running",
    )

    def depth(queue: str, state: str) -> float:
        return samples[("dramatiq_queue_depth", (("queue", queue), ("state", state)))]

    samples = worker.scrape()
    client = redis_server.client()
    assert depth("clone-queue", "ready") == client.llen("dramatiq:clone-queue") == 7
    assert depth("clone-queue", "delayed") == client.hlen("dramatiq:clone-queue.DQ.msgs") == 3
    assert depth("clone-queue", "dead") == client.zcard("dramatiq:clone-queue.XQ") == 4
    assert depth("clone-queue", "in_flight") == 0
    assert depth("ping", "in_flight") == 1
    assert depth("ping", "ready") == 0
    wait_until(lambda: client.get("wp-k8s-service:probe:held"), 20, message="held ping done")
    wait_until(lambda: worker.value("dramatiq_queue_depth", queue="ping", state="in_flight") == 0, 10)
    assert worker.value("dramatiq_messages_in_progress", queue="ping", actor="ping") == 0


def test_sigterm_lets_the_running_job_finish_and_flushes_its_span(redis_url, redis_server, receiver, workers, tmp_path):
    worker = start_worker(workers, tmp_path, REDIS_URL=redis_url, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
    env = clean_environment(REDIS_URL=redis_url, OTEL_SDK_DISABLED="true")
    (message_id,) = produce(env, [{"actor": "ping", "kwargs": {"nonce": "graceful", "hold_seconds": 3}}])
    wait_until(lambda: worker.value("dramatiq_messages_in_progress", queue="ping", actor="ping") == 1, 20)

    status, took = worker.stop(timeout=30)

    assert status == 0, worker.output()
    assert redis_server.client().get("wp-k8s-service:probe:graceful") is not None, "the running job finished"
    assert took < 3 + 8, f"stopped in {took:.1f}s"
    consumer_ids = {s.attributes.get("messaging.message.id") for s in receiver.snapshot() if s.kind == SPAN_CONSUMER}
    assert message_id in consumer_ids, "the job's span was flushed before exit"
    assert '"message": "Worker stopped"' in worker.output()


def test_dead_collector_neither_loses_jobs_nor_delays_shutdown(redis_url, redis_server, workers, tmp_path):
    dead_endpoint = f"http://127.0.0.1:{free_port()}"
    flush_timeout = 3
    worker = start_worker(
        workers,
        tmp_path,
        REDIS_URL=redis_url,
        OTEL_EXPORTER_OTLP_ENDPOINT=dead_endpoint,
        WORKER_TELEMETRY_FLUSH_TIMEOUT=str(flush_timeout),
    )
    count = 200
    env = clean_environment(REDIS_URL=redis_url, OTEL_EXPORTER_OTLP_ENDPOINT=dead_endpoint)
    produce(env, [{"actor": "ping", "args": [f"d{index}"]} for index in range(count)])
    labels = {"queue": "ping", "actor": "ping", "outcome": "success"}
    wait_until(lambda: worker.value("dramatiq_messages_processed_total", **labels) >= count, 60)
    assert len(redis_server.client().keys("wp-k8s-service:probe:d*")) == count
    wait_until(
        lambda: worker.value("worker_telemetry_spans_dropped_total", reason="export_failed") > 0,
        30,
        message="dropped spans counted",
    )

    status, took = worker.stop(timeout=60)
    assert status == 0, worker.output()
    # Dramatiq's own stop takes a few seconds of polling; the collector may add at most the flush bound.
    assert took < flush_timeout + 6, f"shutdown took {took:.1f}s with a dead collector"


def test_healthz_and_a_crashed_worker_process_stops_the_container(redis_url, workers, tmp_path):
    worker = start_worker(workers, tmp_path, REDIS_URL=redis_url, OTEL_SDK_DISABLED="true")
    health = requests.get(f"{worker.url}/healthz", timeout=5).json()
    assert health == {
        "status": "ok",
        "worker_processes": PROCESSES,
        "expected_processes": PROCESSES,
        "dramatiq_running": True,
    }
    assert requests.get(f"{worker.url}/nope", timeout=5).status_code == 404

    pids = sorted(int(path.name.split("-")[1].split(".")[0]) for path in worker.metrics_dir.glob("worker-*.alive"))
    assert len(pids) == PROCESSES
    import os

    os.kill(pids[0], signal.SIGKILL)
    status = worker.process.wait(timeout=30)
    assert status != 0, "a crashed worker process must not be hidden: the container restarts"
    assert "exited unexpectedly" in worker.output()


def test_metrics_answer_at_once_while_redis_is_down(workers, tmp_path):
    """A scrape must not wait out redis-py's retries: Prometheus would time out and lose every series."""
    own_redis = RedisServer(tmp_path / "own-redis")
    try:
        worker = start_worker(workers, tmp_path, REDIS_URL=own_redis.url, WORKER_PROCESSES="1")
        assert worker.value("dramatiq_broker_up") == 1
    finally:
        own_redis.stop()
    for _ in range(3):  # the first scrape finds the pooled connection broken, the next ones cannot connect
        started = time.monotonic()
        samples = worker.scrape()
        elapsed = time.monotonic() - started
        assert samples[("dramatiq_broker_up", ())] == 0
        assert samples[("dramatiq_worker_processes", ())] == 1  # the rest of the page is still served
        assert elapsed < 1.0, f"scrape took {elapsed:.2f}s with Redis down"


def test_every_family_is_on_metrics_at_zero_before_the_first_job(redis_url, workers, tmp_path):
    """Issue 17: before any job, the dashboards' families exist with a zero series per known actor,
    aggregated over both worker processes (and the in-progress `livesum` gauge stays right)."""
    worker = start_worker(workers, tmp_path, REDIS_URL=redis_url)
    samples = worker.scrape()
    for queue, actor in (("clone-queue", "clone_wordpress"), ("ping", "ping")):
        labels = (("actor", actor), ("queue", queue))
        for outcome in ("failed", "retried", "skipped", "success"):
            key = ("dramatiq_messages_processed_total", (("actor", actor), ("outcome", outcome), ("queue", queue)))
            assert samples[key] == 0, key
        errors = (("actor", actor), ("error_type", "InvalidJobArguments"), ("queue", queue))
        assert samples[("dramatiq_errors_total", errors)] == 0
        assert samples[("dramatiq_message_processing_time_count", labels)] == 0
        assert samples[("dramatiq_message_processing_time_sum", labels)] == 0
        buckets = [value for (name, _), value in samples.items() if name == "dramatiq_message_processing_time_bucket"]
        assert buckets, "histogram buckets"
        assert samples[("dramatiq_message_processing_time_bucket", (*labels[:1], ("le", "+Inf"), *labels[1:]))] == 0
        assert samples[("dramatiq_message_retries_total", labels)] == 0
        assert samples[("dramatiq_messages_dead_lettered_total", labels)] == 0
        assert samples[("dramatiq_messages_in_progress", labels)] == 0
        assert samples[("dramatiq_queue_depth", (("queue", queue), ("state", "ready")))] == 0

    # The in-progress gauge, initialised in both processes, counts one running job once.
    env = clean_environment(REDIS_URL=redis_url, OTEL_SDK_DISABLED="true")
    produce(env, [{"actor": "ping", "kwargs": {"hold_seconds": 2}}])
    running = {"queue": "ping", "actor": "ping"}
    wait_until(lambda: worker.value("dramatiq_messages_in_progress", **running) == 1, 15, message="job running")
    wait_until(
        lambda: worker.value("dramatiq_messages_processed_total", **running, outcome="success") == 1,
        15,
        message="job done",
    )
    assert worker.value("dramatiq_messages_in_progress", **running) == 0
