"""The setup guide's code, run as written: the application's own broker is the one traced and used.

Each scenario runs in a process of its own (Dramatiq's global broker, the package's broker and the
OpenTelemetry SDK are process globals). The guide's snippet is copied below verbatim; only its
Redis URL is the test's own password-protected redis-server, and `import dramatiq` (which the
guide's fragment takes for granted) comes first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from wp_devsupport.otlp_receiver import OtlpReceiver
from wp_devsupport.processes import wait_until
from wp_devsupport.redis_server import RedisServer
from wp_devsupport.worker import REPO_ROOT, WorkerProcess, clean_environment

#: The guide's snippet, verbatim (its `<password>` URL is replaced by the test's Redis URL).
GUIDE_SNIPPET = """\
from dramatiq.brokers.redis import RedisBroker
REDIS_URL = "redis://:<password>@redis-master.wordpress-staging.svc.cluster.local:6379/0"
broker = RedisBroker(url=REDIS_URL)
dramatiq.set_broker(broker)

from dramatiq_otlp_middleware import DramatiqTracing
DramatiqTracing.setup(service_name="wp-k8s-service-worker")
"""
GUIDE_URL = "redis://:<password>@redis-master.wordpress-staging.svc.cluster.local:6379/0"

#: What the API does next: enqueue one clone now and one in 5 s, as the guide shows.
API_CODE = """\
import json
import sys

from worker_app.observability.tracing import OpenTelemetryMiddleware
from worker_app.tasks import clone_wordpress

now = clone_wordpress.send("https://source.example", "https://target.example", {})
later = clone_wordpress.send_with_options(
    args=("https://source.example", "https://later.example", {}), delay=5000
)
DramatiqTracing.shutdown()
json.dump(
    {
        "ids": [now.message_id, later.message_id],
        "actors_on_the_guide_broker": clone_wordpress.broker is broker,
        "global_is_the_guide_broker": dramatiq.broker.global_broker is broker,
        "tracing_middleware": sum(isinstance(m, OpenTelemetryMiddleware) for m in broker.middleware),
    },
    sys.stdout,
)
"""

PASSWORD = "guide-secret"
PRODUCER, CONSUMER = 4, 5  # OTLP SpanKind values
ERROR = 2  # OTLP status code


@pytest.fixture
def guarded_redis(tmp_path) -> Iterator[RedisServer]:
    """A redis-server with a password, like the guide's `redis://:<password>@...`."""
    server = RedisServer(tmp_path / "redis", password=PASSWORD)
    yield server
    server.stop()


def run_python(code: str, env: dict[str, str], *args: str) -> dict[str, object]:
    """Run `code` in a Python process of its own; returns the JSON it printed."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


@pytest.mark.integration
def test_the_guides_snippet_traces_sends_through_the_applications_broker_to_the_worker(guarded_redis, tmp_path):
    receiver = OtlpReceiver()
    worker = None
    try:
        worker = WorkerProcess(
            tmp_path,
            clean_environment(
                REDIS_URL=guarded_redis.url,
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                OTEL_BSP_SCHEDULE_DELAY="200",
                WORKER_PROCESSES="1",
                WORKER_THREADS="2",
                WORKER_SHUTDOWN_TIMEOUT="10",
            ),
        )
        worker.wait_healthy()

        # The API's environment as the guide configures it. No REDIS_*: the package's own broker
        # would go to 127.0.0.1:6379, so messages reach the worker only through the guide's broker.
        env = clean_environment(
            DRAMATIQ_SERVICE_NAME="wp-k8s-service-worker",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_SERVICE_NAME="wp-k8s-service",
            OTEL_RESOURCE_ATTRIBUTES="deployment.environment=staging",
        )
        snippet = GUIDE_SNIPPET.replace(GUIDE_URL, guarded_redis.url)
        assert snippet != GUIDE_SNIPPET
        sent_at = time.monotonic()
        answer = run_python("import dramatiq\n" + snippet + API_CODE, env)
        assert answer["actors_on_the_guide_broker"] is True
        assert answer["global_is_the_guide_broker"] is True
        assert answer["tracing_middleware"] == 1
        ids = answer["ids"]
        assert isinstance(ids, list)

        def consumed() -> bool:
            return {s.attributes.get("messaging.message.id") for s in receiver.snapshot() if s.kind == CONSUMER} >= set(
                ids
            )

        wait_until(consumed, 30, message="both clones processed by the worker")
        waited = time.monotonic() - sent_at
        spans = receiver.snapshot()
    finally:
        receiver.stop()
        if worker is not None:
            worker.stop()

    producers = {s.attributes["messaging.message.id"]: s for s in spans if s.kind == PRODUCER}
    consumers = {s.attributes["messaging.message.id"]: s for s in spans if s.kind == CONSUMER}
    for message_id in ids:
        send, process = producers[message_id], consumers[message_id]
        assert send.name == "send clone-queue"
        assert send.service_name == "wp-k8s-service-worker", "the name given to setup()"
        assert process.name == "process clone-queue"
        assert process.trace_id == send.trace_id, "one trace from the API's send to the worker's job"
        assert process.parent_span_id == send.span_id, "the consumer span is the send span's child"
        # Neither URL host is in CLONE_ALLOWED_HOSTS: refused for good, as the worker is configured.
        assert process.attributes["dramatiq.message.outcome"] == "failed"
        assert process.status_code == ERROR
    assert "dramatiq.message.delay_ms" not in producers[ids[0]].attributes
    assert producers[ids[1]].attributes["dramatiq.message.delay_ms"] == 5000
    assert waited >= 5, "the delayed clone ran after its delay"


SETUP_SCENARIO = """\
import json
import sys

import dramatiq
from dramatiq.brokers.stub import StubBroker

from worker_app.observability.tracing import OpenTelemetryMiddleware

order = sys.argv[1]
answer = {}
if order != "no-application-broker":
    app_broker = StubBroker()
    dramatiq.set_broker(app_broker)

    @dramatiq.actor(broker=app_broker, queue_name="app")
    def declared_before(): ...

if order == "tasks-first":
    from worker_app import tasks

from dramatiq_otlp_middleware import DramatiqTracing

DramatiqTracing.setup(service_name="api")
DramatiqTracing.setup(service_name="api")  # twice: nothing more is added
from worker_app import tasks

traced = dramatiq.broker.global_broker
if order != "no-application-broker":
    answer["global_is_the_application_broker"] = traced is app_broker

    @dramatiq.actor(broker=app_broker, queue_name="app", non_error_exceptions=(KeyError,))
    def declared_after(): ...

    sends = [declared_before.send(), declared_after.send()]
else:
    sends = []
sends += [tasks.ping.send("n1"), tasks.clone_wordpress.send("https://a.example", "https://b.example")]
answer["broker_type"] = type(traced).__name__
answer["actors_on_the_traced_broker"] = tasks.broker is traced and tasks.ping.broker is traced
answer["tracing_middleware"] = sum(isinstance(m, OpenTelemetryMiddleware) for m in traced.middleware)
answer["traceparents"] = [m.options.get("otel_context", {}).get("traceparent") for m in sends]
json.dump(answer, sys.stdout)
"""


@pytest.mark.parametrize("order", ["guide", "tasks-first"])
def test_setup_traces_the_broker_the_application_set_whatever_the_import_order(order):
    """The guide's order (set_broker, setup, import tasks) and the other one (tasks before setup)."""
    env = clean_environment(OTEL_TRACES_EXPORTER="none", WORKER_BROKER="stub")
    answer = run_python(SETUP_SCENARIO, env, order)
    assert answer["global_is_the_application_broker"] is True
    assert answer["broker_type"] == "StubBroker", "the application's broker, not one built by the package"
    assert answer["actors_on_the_traced_broker"] is True, "worker_app.tasks declared its actors on it"
    assert answer["tracing_middleware"] == 1
    traceparents = answer["traceparents"]
    assert isinstance(traceparents, list)
    assert len(traceparents) == 4
    assert all(isinstance(value, str) and value.startswith("00-") for value in traceparents), (
        "actors declared before and after setup(), and the package's, all send with a producer span"
    )


def test_setup_without_an_application_broker_uses_the_packages_broker():
    """No `dramatiq.set_broker()`: the package's broker (REDIS_*/WORKER_BROKER), never Dramatiq's localhost default."""
    env = clean_environment(OTEL_TRACES_EXPORTER="none", WORKER_BROKER="stub")
    answer = run_python(SETUP_SCENARIO, env, "no-application-broker")
    assert answer["broker_type"] == "FastStubBroker", "the package's broker became the global one"
    assert answer["actors_on_the_traced_broker"] is True
    assert answer["tracing_middleware"] == 1
    traceparents = answer["traceparents"]
    assert isinstance(traceparents, list)
    assert len(traceparents) == 2
    assert all(isinstance(value, str) and value.startswith("00-") for value in traceparents)
