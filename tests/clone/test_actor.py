"""`clone_wordpress` run by a real worker (`python -m worker_app`) on a real Redis, against the two
real WordPress sites, with its spans exported over OTLP: the issue's end-to-end proof."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from wp_devsupport.otlp_receiver import OtlpReceiver
from wp_devsupport.processes import wait_until
from wp_devsupport.wordpress.check import assert_cloned, fingerprint
from wp_devsupport.wordpress.sites import clone_env
from wp_devsupport.worker import WorkerProcess, clean_environment, produce

pytestmark = pytest.mark.integration

ACTOR = {"queue": "clone-queue", "actor": "clone_wordpress"}
SPAN_CLIENT, SPAN_CONSUMER = 3, 5  # OTLP SpanKind values
WRONG_PASSWORD = "wron gwro ngwr ongw rong wron"
PHASES = {"clone.read", "clone.terms", "clone.media", "clone.rewrite", "clone.pages", "clone.posts", "clone.attach"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A source that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture(scope="module")
def worker(wp_sites, redis_server, receiver, tmp_path_factory) -> Iterator[WorkerProcess]:
    redis_server.client().flushdb()
    env = clean_environment(
        REDIS_URL=redis_server.url,
        WORKER_PROCESSES="1",
        WORKER_THREADS="2",
        WORKER_SHUTDOWN_TIMEOUT="20",
        WORKER_TELEMETRY_FLUSH_TIMEOUT="3",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="200",
        LOG_FORMAT="json",
        **clone_env(
            wp_sites,
            # 10.1.2.3 is allowed as a host name but not as an address: the private-address test.
            CLONE_ALLOWED_HOSTS="127.0.0.1,localhost,10.1.2.3",
            CLONE_HTTP_TIMEOUT="3",
            CLONE_HTTP_RETRIES="1",
        ),
        # The target again, under another name, with a wrong password: the credentials test.
        **{f"WORDPRESS_AUTH_LOCALHOST_{wp_sites.target.port}": f"admin:{WRONG_PASSWORD}"},
    )
    process = WorkerProcess(tmp_path_factory.mktemp("clone-worker"), env, name="clone-worker")
    try:
        process.wait_healthy()
        yield process
    finally:
        process.stop()


def run_job(worker, redis_server, args: list[Any], outcome: str, options: dict[str, Any] | None = None):
    """Enqueue one clone, wait until the worker has finished it for good (success or failed), check
    it ended with `outcome`; returns its id and log records."""

    def finished() -> dict[str, float]:
        return {
            name: worker.value("dramatiq_messages_processed_total", **ACTOR, outcome=name)
            for name in ("success", "failed")
        }

    before = finished()
    env = clean_environment(REDIS_URL=redis_server.url, OTEL_SDK_DISABLED="true")
    (message_id,) = produce(env, [{"actor": "clone_wordpress", "args": args, "options": options or {}}])
    wait_until(lambda: finished() != before, 180, message="clone finished for good")
    records = log_records(worker, message_id)
    ended = next(name for name, count in finished().items() if count != before[name])
    assert ended == outcome, f"the job ended {ended}, expected {outcome}: {records}"
    return message_id, records


def log_records(worker, message_id: str) -> list[dict[str, Any]]:
    records = []
    for line in worker.output().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("message_id") == message_id:
                records.append(record)
    return records


def dead_letter(redis_server, message_id: str) -> dict[str, Any] | None:
    """The dead-lettered message as the Redis broker keeps it (the queue's `.XQ.msgs` hash, keyed by
    the broker's own id for each enqueue, so searched by the message id)."""
    for raw in redis_server.client().hvals("dramatiq:clone-queue.XQ.msgs"):
        message = json.loads(raw)
        if message["message_id"] == message_id:
            return dict(message)
    return None


def one(records, message: str) -> dict[str, Any]:
    (found,) = [record for record in records if record["message"].startswith(message)]
    return found


def test_clone_copies_everything_is_traced_and_a_second_run_changes_nothing(
    fresh_target, worker, redis_server, receiver
):
    sites = fresh_target
    message_id, records = run_job(worker, redis_server, [sites.source.url, sites.target.url, {}], "success")
    assert_cloned(sites)
    finished = one(records, "clone finished")
    assert finished["counts"]["posts"] == {"copied": 3, "updated": 0, "skipped": 0, "failed": 0}
    assert finished["counts"]["media"]["copied"] == 2
    assert finished["media_attached"] == 2
    # Exported by the worker's /metrics, aggregated over its processes.
    assert worker.value("wp_clone_items_total", content_type="posts", result="copied") == 3
    assert worker.value("wp_clone_items_total", content_type="categories", result="skipped") == 1
    print(f"\n[clone] seeded site through the worker: {finished['duration_seconds']} s")

    # The trace: phase spans are children of the consumer span, HTTP client spans of the phases.
    def exported() -> bool:
        spans = receiver.snapshot()
        consumer = [
            s for s in spans if s.kind == SPAN_CONSUMER and s.attributes.get("messaging.message.id") == message_id
        ]
        return bool(consumer) and {s.name for s in spans if s.trace_id == consumer[0].trace_id} >= PHASES

    wait_until(exported, 30, message="the clone's spans exported")
    spans = receiver.snapshot()
    (consumer,) = [
        s for s in spans if s.kind == SPAN_CONSUMER and s.attributes.get("messaging.message.id") == message_id
    ]
    assert consumer.name == "process clone-queue"
    in_trace = [s for s in spans if s.trace_id == consumer.trace_id]
    phases = {s.name: s for s in in_trace if s.name in PHASES}
    assert set(phases) == PHASES
    assert all(s.parent_span_id == consumer.span_id for s in phases.values())
    assert phases["clone.posts"].attributes["wordpress.clone.copied"] == 3
    phase_ids = {s.span_id for s in phases.values()}
    http = [s for s in in_trace if s.kind == SPAN_CLIENT]
    assert len(http) >= 20
    assert all(s.parent_span_id in phase_ids for s in http)
    for span in in_trace:
        assert sites.target.application_password not in json.dumps(span.attributes, default=str)
        assert sites.source.application_password not in json.dumps(span.attributes, default=str)
    assert sites.target.application_password not in worker.output()

    before = fingerprint(sites.target)
    _, records = run_job(worker, redis_server, [sites.source.url, sites.target.url, {}], "success")
    assert fingerprint(sites.target) == before
    counts = one(records, "clone finished")["counts"]
    assert all(c["copied"] == c["updated"] == c["failed"] == 0 for c in counts.values()), counts


def test_dry_run_changes_nothing_and_reports_the_plan(fresh_target, worker, redis_server):
    sites = fresh_target
    before = fingerprint(sites.target)
    args = [sites.source.url, sites.target.url, {"dry_run": True}]
    _, records = run_job(worker, redis_server, args, "success")
    assert fingerprint(sites.target) == before
    finished = one(records, "clone finished")
    assert finished["dry_run"] is True
    assert {entry["slug"]: entry["action"] for entry in finished["plan"]["posts"]} == {
        "first-release": "create",
        "cloning-guide": "create",
        "upcoming": "create",
    }
    assert {entry["slug"] for entry in finished["plan"]["media"]} == {"harbor", "sunrise"}


def test_wrong_target_credentials_fail_at_once_with_a_clear_error(wp_sites, worker, redis_server):
    retries_before = worker.value("dramatiq_message_retries_total", **ACTOR)
    target = f"http://localhost:{wp_sites.target.port}"
    message_id, records = run_job(worker, redis_server, [wp_sites.source.url, target, {}], "failed")
    failure = one(records, "Job dead-lettered")
    assert failure["error_type"] == "InvalidJobArguments"
    assert failure["retries"] == 0
    assert (
        f"WordPress rejected the credentials from WORDPRESS_AUTH_LOCALHOST_{wp_sites.target.port}" in failure["message"]
    )
    assert worker.value("dramatiq_message_retries_total", **ACTOR) == retries_before
    # The dead-letter queue gets it when the broker nacks it, just after the metric counts it.
    wait_until(lambda: dead_letter(redis_server, message_id) is not None, 10, message="dead-lettered")
    assert WRONG_PASSWORD not in worker.output()


def test_a_source_that_times_out_is_retried_then_dead_lettered_with_the_reason(
    wp_sites, worker, redis_server, silent_port
):
    retries_before = worker.value("dramatiq_message_retries_total", **ACTOR)
    source = f"http://127.0.0.1:{silent_port}"
    # One retry of the message, soon (the actor's own backoff is minutes: fine in production, slow here).
    options = {"max_retries": 1, "min_backoff": 100, "max_backoff": 200}
    message_id, records = run_job(worker, redis_server, [source, wp_sites.target.url, {}], "failed", options)
    assert worker.value("dramatiq_message_retries_total", **ACTOR) == retries_before + 1
    failure = one(records, "Job dead-lettered")
    assert failure["error_type"] == "TransientJobError"
    assert (
        f"source http://127.0.0.1:{silent_port}: no response within 3.0 s (gave up after 2 attempts)"
        in failure["message"]
    )
    wait_until(lambda: dead_letter(redis_server, message_id) is not None, 10, message="dead-lettered")
    assert "TransientJobError: source" in dead_letter(redis_server, message_id)["options"]["traceback"]


def test_a_private_address_is_refused_unless_allowed(wp_sites, worker, redis_server):
    # Loopback is allowed by CLONE_ALLOWED_NETWORKS (every other test); 10.0.0.0/8 is not.
    _, records = run_job(worker, redis_server, [wp_sites.source.url, "http://10.1.2.3", {}], "failed")
    failure = one(records, "Job dead-lettered")
    assert failure["error_type"] == "InvalidJobArguments"
    assert failure["retries"] == 0
    assert "target_url: refused: 10.1.2.3 resolves to 10.1.2.3 is a private address" in failure["message"]
