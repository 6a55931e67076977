"""`make demo` (`python -m wp_devsupport.demo`): the whole job on this machine, end to end, on loopback.

Starts Redis, the OpenTelemetry Collector, the worker (2 processes) and Prometheus scraping it,
enqueues sample jobs the way the API does (producer tracing on), and prints what happened: jobs
processed and dead-lettered, each job's trace as the collector received it (producer span ->
consumer span), and the metric values read back from Prometheus's HTTP API. Everything it started
is stopped on exit or Ctrl-C (DEMO_HOLD=1 keeps the stack up until Ctrl-C); logs stay in .state/demo/.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from types import FrameType
from typing import Any

from .processes import wait_until
from .repo import REPO
from .stack import CollectedSpan, Stack
from .worker import produce

STATE = REPO / ".state" / "demo"

PINGS = 20
DELAYED = 5
INVALID = 3

QUERIES = (
    ("jobs processed, by queue and outcome", "sum by (queue, outcome) (dramatiq_messages_processed_total) > 0"),
    ("errors, by actor and type", "sum by (actor, error_type) (dramatiq_errors_total)"),
    ("dead-lettered, by queue", "sum by (queue) (dramatiq_messages_dead_lettered_total)"),
    (
        "p95 processing time (s), by actor",
        "histogram_quantile(0.95, sum by (actor, le) (dramatiq_message_processing_time_bucket))",
    ),
    ("queue depth, by queue and state", "max by (queue, state) (dramatiq_queue_depth) > 0"),
    ("worker processes up", "sum(dramatiq_worker_processes)"),
)


def main() -> int:
    if shutil.which("redis-server") is None:
        print("redis-server is missing: run `make services` first", file=sys.stderr)
        return 1
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    stack: Stack | None = None
    try:
        stack = Stack(STATE)
        report(stack)
        if os.environ.get("DEMO_HOLD") == "1":
            print("\nThe stack keeps running (DEMO_HOLD=1); Ctrl-C stops it.")
            signal.pause()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        print("\nStopping what the demo started...")
        if stack is not None:
            stack.stop()
        print(f"Logs: {STATE.relative_to(REPO)}/ (redis/, otelcol.log, prometheus.log, worker.log, traces.jsonl)")


def report(stack: Stack) -> None:
    print("Stack on loopback")
    print(f"  Redis       {stack.redis.url}")
    print(f"  Collector   OTLP/HTTP {stack.collector.endpoint} -> {stack.collector.traces_file.relative_to(REPO)}")
    print(f"  Worker      2 processes x 4 threads, /metrics and /healthz on {stack.worker.url}")
    print(f"  Prometheus  {stack.prometheus.url} (scrapes the worker every second)")

    jobs: list[dict[str, object]] = [{"actor": "ping", "args": [f"demo-{i}"]} for i in range(PINGS)]
    jobs += [{"actor": "ping", "args": [f"later-{i}"], "options": {"delay": 2000}} for i in range(DELAYED)]
    jobs += [{"actor": "clone_wordpress", "args": ["ftp://old.example", "https://new.example", {}]}] * INVALID
    ids = produce(stack.producer_env(), jobs)
    print(f"\nEnqueued {PINGS} pings, {DELAYED} more delayed by 2 s, {INVALID} invalid clone requests")
    print("  (from a separate process, as the API does: producer spans on, trace context in each message)")

    client = stack.redis.client()
    wait_until(lambda: len(client.keys("wp-k8s-service:probe:*")) == PINGS + DELAYED, 60, message="pings answered")
    wait_until(lambda: client.zcard("dramatiq:clone-queue.XQ") == INVALID, 30, message="invalid clones dead-lettered")
    print("\nJobs")
    print(f"  processed      {len(client.keys('wp-k8s-service:probe:*'))} of {PINGS + DELAYED} pings")
    print(f"  dead-lettered  {client.zcard('dramatiq:clone-queue.XQ')} of {INVALID} clone requests", end="")
    marker = '"message": "Job dead-lettered: '
    reasons = {
        line.split(marker, 1)[1].split('"', 1)[0] for line in stack.worker.output().splitlines() if marker in line
    }
    print(f" ({'; '.join(sorted(reasons))})" if reasons else "")

    wanted = set(ids)

    collector = stack.collector

    def traced() -> list[CollectedSpan]:
        spans = [s for s in collector.spans() if s.attributes.get("messaging.message.id") in wanted]
        return spans if {s.attributes["messaging.message.id"] for s in spans if s.kind == "consumer"} == wanted else []

    by_id: dict[str, dict[str, CollectedSpan]] = {}
    for span in wait_until(traced, 30, message="every job's spans at the collector"):
        by_id.setdefault(str(span.attributes["messaging.message.id"]), {})[span.kind] = span
    print("\nTraces at the collector: producer span (API) -> consumer span (worker), one trace per job")
    shown = ids[:4] + ids[PINGS : PINGS + 1] + ids[-2:]
    for message_id in shown:
        producer, consumer = by_id[message_id]["producer"], by_id[message_id]["consumer"]
        linked = consumer.trace_id == producer.trace_id and consumer.parent_span_id == producer.span_id
        status = f"ERROR {consumer.attributes.get('error.type')}" if consumer.status_code == 2 else "ok"
        print(
            f"  trace {producer.trace_id}  {producer.name} ({producer.service_name}) -> "
            f"{consumer.name} ({consumer.service_name})  {'child of the send' if linked else 'NOT LINKED'}, {status}"
        )
    complete = sum(1 for parts in by_id.values() if {"producer", "consumer"} <= parts.keys())
    print(f"  ... {complete} of {len(ids)} jobs have both spans in one trace")

    prometheus = stack.prometheus
    wait_until(
        lambda: prometheus.value("sum(dramatiq_message_processing_time_count)") == len(ids),
        30,
        message="Prometheus scraped every job",
    )
    print("\nMetrics, read back from Prometheus's HTTP API")
    for title, query in QUERIES:
        rows = prometheus.query(query)
        values = ", ".join(_describe(row) for row in rows) or "none"
        print(f"  {title}: {values}")
    exemplars = prometheus.exemplars("dramatiq_message_processing_time_bucket")
    traces = {e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]}
    print(f"  exemplars on the processing-time histogram: {len(traces)} trace ids, e.g. {sorted(traces)[:1]}")


def _describe(row: dict[str, Any]) -> str:
    labels = ",".join(f"{key}={value}" for key, value in sorted(row["metric"].items()) if key != "__name__")
    value = float(row["value"][1])
    shown = f"{value:g}" if value == int(value) else f"{value:.3f}"
    return f"{{{labels}}} {shown}" if labels else shown


if __name__ == "__main__":
    sys.exit(main())
