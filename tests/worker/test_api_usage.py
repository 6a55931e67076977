"""The README's FastAPI example, run for real: producer spans under the request span, context in the message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from wp_devsupport.otlp_receiver import OtlpReceiver
from wp_devsupport.processes import wait_until
from wp_devsupport.worker import REPO_ROOT, clean_environment

SERVER, PRODUCER = 2, 4  # OTLP SpanKind values


def test_readme_fastapi_example_enqueues_with_producer_spans_and_propagation():
    receiver = OtlpReceiver()
    try:
        env = clean_environment(WORKER_BROKER="stub", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        result = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("readme_api_example.py"))],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        output = json.loads(result.stdout)
        wait_until(lambda: len([s for s in receiver.snapshot() if s.kind == PRODUCER]) == 2, 10)
        spans = receiver.snapshot()
    finally:
        receiver.stop()

    ids = [answer["job_id"] for answer in output["answers"]]
    messages = {message["id"]: message for message in output["messages"]}
    assert messages[ids[0]]["queue"] == "clone-queue"
    assert messages[ids[1]]["queue"] == "clone-queue.DQ", "the scheduled clone is delayed"

    producers = {s.attributes["messaging.message.id"]: s for s in spans if s.kind == PRODUCER}
    servers = {s.span_id: s for s in spans if s.kind == SERVER}
    for job_id in ids:
        producer = producers[job_id]
        assert producer.name == "send clone-queue"
        assert producer.service_name == "wp-k8s-service"
        request = servers[producer.parent_span_id]
        assert request.name.startswith("POST /clones")
        assert request.trace_id == producer.trace_id
        traceparent = messages[job_id]["options"]["otel_context"]["traceparent"]
        version, trace_id, parent_id, flags = traceparent.split("-")
        assert (version, trace_id, parent_id) == ("00", producer.trace_id, producer.span_id)
        assert int(flags, 16) & 1, "sampled flag set"
    assert producers[ids[1]].attributes["dramatiq.message.delay_ms"] == 60_000
