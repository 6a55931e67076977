"""End to end on real processes: producer -> Redis -> worker -> collector and Prometheus.

100 jobs from a producer process with tracing on (some delayed, some failing on purpose); every
one must be processed or dead-lettered as designed, arrive at the collector as one trace from
producer to consumer, and be counted in what Prometheus scraped.
"""

from __future__ import annotations

import pytest

from wp_devsupport.processes import wait_until
from wp_devsupport.worker import produce

pytestmark = pytest.mark.integration

IMMEDIATE, DELAYED, INVALID_CLONES, INVALID_PINGS = 60, 20, 15, 5
OK = IMMEDIATE + DELAYED
TOTAL = OK + INVALID_CLONES + INVALID_PINGS


@pytest.fixture(scope="module")
def sent(stack) -> dict[str, list[str]]:
    jobs: list[dict[str, object]] = [{"actor": "ping", "args": [f"now-{i}"]} for i in range(IMMEDIATE)]
    jobs += [{"actor": "ping", "args": [f"later-{i}"], "options": {"delay": 1500}} for i in range(DELAYED)]
    jobs += [
        {"actor": "clone_wordpress", "args": [f"ftp://site{i}.example", "https://b.example", {}]}
        for i in range(INVALID_CLONES)
    ]
    jobs += [{"actor": "ping", "args": ["not a valid nonce!"]} for _ in range(INVALID_PINGS)]
    assert len(jobs) == TOTAL
    ids = produce(stack.producer_env(), jobs)
    return {
        "ok": ids[:OK],
        "invalid_clones": ids[OK : OK + INVALID_CLONES],
        "invalid_pings": ids[OK + INVALID_CLONES :],
    }


def test_every_job_is_processed_or_dead_lettered_as_designed(stack, sent):
    client = stack.redis.client()
    wait_until(lambda: len(client.keys("wp-k8s-service:probe:*")) == OK, 60, message=f"{OK} pings answered")
    wait_until(
        lambda: (
            client.zcard("dramatiq:clone-queue.XQ") == INVALID_CLONES
            and client.zcard("dramatiq:ping.XQ") == INVALID_PINGS
        ),
        30,
        message="invalid jobs dead-lettered",
    )
    assert sorted(client.keys("wp-k8s-service:probe:*")) == sorted(
        [f"wp-k8s-service:probe:now-{i}" for i in range(IMMEDIATE)]
        + [f"wp-k8s-service:probe:later-{i}" for i in range(DELAYED)]
    )
    dead_ids = {message_id.split("|")[0] for message_id in client.zrange("dramatiq:clone-queue.XQ", 0, -1)}
    assert len(dead_ids) == INVALID_CLONES


def test_each_job_is_one_trace_from_producer_to_consumer(stack, sent):
    everything = sent["ok"] + sent["invalid_clones"] + sent["invalid_pings"]

    def consumers_arrived():
        return {
            s.attributes.get("messaging.message.id") for s in stack.collector.spans() if s.kind == "consumer"
        } >= set(everything)

    wait_until(consumers_arrived, 60, message="consumer spans at the collector")
    spans = stack.collector.spans()
    producers = {s.attributes["messaging.message.id"]: s for s in spans if s.kind == "producer"}
    consumers = {s.attributes["messaging.message.id"]: s for s in spans if s.kind == "consumer"}
    for message_id in everything:
        producer, consumer = producers[message_id], consumers[message_id]
        queue = producer.attributes["messaging.destination.name"]
        assert producer.name == f"send {queue}"
        assert consumer.name == f"process {queue}"
        assert producer.service_name == "wp-k8s-service"
        assert consumer.service_name == "wp-k8s-service-worker"
        assert consumer.trace_id == producer.trace_id
        assert consumer.parent_span_id == producer.span_id
    for message_id in sent["ok"]:
        assert consumers[message_id].status_code == 0
    for message_id in sent["invalid_clones"] + sent["invalid_pings"]:
        consumer = consumers[message_id]
        assert consumer.status_code == 2, "a dead-lettered job is an error"
        assert consumer.attributes["error.type"] == "worker_app.errors.InvalidJobArguments"
    delayed = sent["ok"][IMMEDIATE:]
    assert all(producers[message_id].attributes["dramatiq.message.delay_ms"] == 1500 for message_id in delayed)


def test_prometheus_scraped_numbers_match_what_was_sent(stack, sent):
    prometheus = stack.prometheus
    expectations = {
        'sum(dramatiq_messages_processed_total{queue="ping",outcome="success"})': OK,
        'sum(dramatiq_messages_processed_total{outcome="failed"})': INVALID_CLONES + INVALID_PINGS,
        'sum(dramatiq_errors_total{actor="clone_wordpress",error_type="InvalidJobArguments"})': INVALID_CLONES,
        'sum(dramatiq_errors_total{actor="ping",error_type="InvalidJobArguments"})': INVALID_PINGS,
        "sum(dramatiq_message_processing_time_count)": TOTAL,
        'sum(dramatiq_message_processing_time_bucket{le="+Inf"})': TOTAL,
        "sum(dramatiq_messages_dead_lettered_total)": INVALID_CLONES + INVALID_PINGS,
        "sum(dramatiq_message_retries_total)": 0,
        'max by (queue, state) (dramatiq_queue_depth{queue="clone-queue",state="dead"})': INVALID_CLONES,
        'max by (queue, state) (dramatiq_queue_depth{queue="ping",state="dead"})': INVALID_PINGS,
        'max by (queue, state) (dramatiq_queue_depth{queue="ping",state="ready"})': 0,
        'max by (queue, state) (dramatiq_queue_depth{queue="ping",state="delayed"})': 0,
        "sum(dramatiq_messages_in_progress)": 0,
        "dramatiq_broker_up": 1,
        "dramatiq_worker_processes": 2,
    }

    def all_match() -> bool:
        return all(prometheus.value(query) == expected for query, expected in expectations.items())

    try:
        wait_until(all_match, 60, interval=1, message="Prometheus values")
    except TimeoutError:
        actual = {query: prometheus.value(query) for query in expectations}
        mismatched = {q: (actual[q], expected) for q, expected in expectations.items() if actual[q] != expected}
        raise AssertionError(f"(actual, expected) per query: {mismatched}") from None

    # Exemplars: histogram buckets link to traces of the jobs that landed in them.
    consumer_traces = {s.trace_id for s in stack.collector.spans() if s.kind == "consumer"}
    exemplars = wait_until(
        lambda: prometheus.exemplars("dramatiq_message_processing_time_bucket"), 30, message="exemplars stored"
    )
    trace_ids = {e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]}
    assert trace_ids
    assert trace_ids <= consumer_traces
