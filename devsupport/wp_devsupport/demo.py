"""`make demo` (`python -m wp_devsupport.demo`): the service's job on this machine, end to end, on loopback.

Starts two WordPress sites (PHP's built-in server and MariaDB from Debian, as the clone tests do),
Redis, the OpenTelemetry Collector, the worker (allowed to clone only loopback sites, with their
Application Passwords), Prometheus scraping it, and the README's FastAPI API (ci/kind/api/app.py)
under uvicorn with its tracing on. Then, over HTTP to the API: a clone of the source site into the
target, a clone the worker must refuse for good (a host not in CLONE_ALLOWED_HOSTS: dead-lettered),
and, once the first is done, the same clone scheduled 2 s later (nothing duplicated: all skipped).
It prints what happened: each job's outcome, what was copied (the worker's summaries and the target
read back through its REST API), each trace as the collector received it (request -> send ->
process -> the clone's phases) and the metrics read back from Prometheus's HTTP API.

Everything it started is stopped on exit or Ctrl-C (DEMO_HOLD=1 keeps it all up until Ctrl-C); logs
stay in .state/demo/ (`--logs DIR` for another directory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from .api_server import API_DIR, ApiServer
from .processes import wait_until
from .repo import REPO
from .stack import CollectedSpan, Collector, Stack
from .trace_tree import chain_of, render
from .wordpress.check import content_totals
from .wordpress.sites import Sites, clone_env, running_sites

STATE = REPO / ".state" / "demo"
DELAY_SECONDS = 2
#: A site the worker is not allowed to reach: the job fails for good before sending a packet.
REFUSED_SOURCE = "https://blog.example.com"
SERVICE = "wp-k8s-service"

QUERIES = (
    ("jobs processed, by queue and outcome", "sum by (queue, outcome) (dramatiq_messages_processed_total) > 0"),
    ("errors, by actor and type", "sum by (actor, error_type) (dramatiq_errors_total) > 0"),
    ("dead-lettered, by queue", "sum by (queue) (dramatiq_messages_dead_lettered_total) > 0"),
    ("items cloned, by content type and result", "sum by (content_type, result) (wp_clone_items_total) > 0"),
    (
        "p95 processing time (s), by actor",
        "histogram_quantile(0.95, sum by (actor, le) (dramatiq_message_processing_time_bucket)) > 0",
    ),
    ("queue depth, by queue and state", "max by (queue, state) (dramatiq_queue_depth) > 0"),
    ("worker processes up", "sum(dramatiq_worker_processes)"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wp_devsupport.demo", description="The service's job on this machine, end to end, on loopback."
    )
    parser.add_argument("--logs", type=Path, default=STATE, help="directory of the logs (emptied first)")
    state: Path = parser.parse_args(argv).logs.resolve()
    if shutil.which("redis-server") is None:
        print("redis-server is missing: run `make services` first", file=sys.stderr)
        return 1
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    with contextlib.ExitStack() as running:
        try:
            # Stopped in reverse order: the API, the stack (Prometheus, worker, collector, Redis), the sites.
            running.callback(_stopped, state)
            sites = running.enter_context(running_sites(state / "wordpress"))
            stack = Stack(state, processes=2, threads=4, **clone_env(sites))
            running.callback(stack.stop)
            api = ApiServer(state, {**stack.producer_env(), "OTEL_BSP_SCHEDULE_DELAY": "200"})
            running.callback(api.stop)
            print(f"Started in {time.monotonic() - started:.1f} s (the WordPress sites: {sites.setup_seconds:.1f} s)")
            report(sites, stack, api)
            print(f"\nDone in {time.monotonic() - started:.1f} s.")
            if os.environ.get("DEMO_HOLD") == "1":
                print("\nEverything keeps running (DEMO_HOLD=1); Ctrl-C stops it.")
                signal.pause()
            return 0
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        finally:
            print("\nStopping what the demo started...")


def _stopped(state: Path) -> None:
    print(
        f"Logs: {_shown(state)}/ (api.log, worker.log, otelcol.log, traces.jsonl, prometheus.log, redis/, "
        "wordpress/ with the sites' PHP logs)"
    )


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def report(sites: Sites, stack: Stack, api: ApiServer) -> None:
    source, target = sites.source, sites.target
    print("\nOn loopback")
    print(f"  WordPress   source {source.url}, target {target.url} (PHP's built-in server, MariaDB)")
    print(f"  Redis       {stack.redis.url}")
    print(f"  Collector   OTLP/HTTP {stack.collector.endpoint} -> {_shown(stack.collector.traces_file)}")
    print(f"  Worker      2 processes x 4 threads, may clone 127.0.0.1 only; /metrics on {stack.worker.url}")
    print(f"  Prometheus  {stack.prometheus.url} (scrapes the worker every second)")
    print(f"  API         {api.url}: uvicorn serving {_shown(API_DIR / 'app.py')} (the README's FastAPI example)")

    before = content_totals(target)
    print("\nRequests to the API")
    jobs: dict[str, str] = {}
    jobs["clone"] = _request(api, "/clones", source_url=source.url, target_url=target.url)
    jobs["refused"] = _request(api, "/clones", source_url=REFUSED_SOURCE, target_url=target.url)
    collector = stack.collector
    _wait_for_outcome(collector, jobs["clone"])
    print(f"  (the first clone has finished: the same clone again, scheduled {DELAY_SECONDS} s later)")
    jobs["scheduled"] = _request(
        api, "/clones/scheduled", source_url=source.url, target_url=target.url, delay_seconds=DELAY_SECONDS
    )
    for job in ("refused", "scheduled"):
        _wait_for_outcome(collector, jobs[job])

    spans = collector.spans()
    summaries = _clone_summaries(stack.worker.output())
    print("\nJobs")
    for job, message_id in jobs.items():
        chain = chain_of(spans, message_id)
        assert chain.send is not None
        assert chain.process is not None
        if chain.process.status_code == 2:
            outcome = f"failed for good, dead-lettered: {_dead_letter_reason(stack.worker.output(), message_id)}"
        else:
            outcome = f"done in {chain.process.seconds:.1f} s"
        waited = (chain.process.start_ns - chain.send.end_ns) / 1e9
        print(f"  {job:<10} {message_id}  {outcome} (started {waited:.1f} s after the send)")

    after = content_totals(target)
    source_totals = content_totals(source)
    print("\nWhat was copied: the worker's clone summaries; the sites read back through their REST API")
    clone_ids = [jobs["clone"], jobs["scheduled"]]
    print(f"  {'content type':<13} {'source':>6} {'target before':>13} {'after':>5}   first clone / scheduled clone")
    for kind in before:
        counts = [summaries.get(message_id, {}).get("counts", {}).get(kind, {}) for message_id in clone_ids]
        described = " / ".join(_counts(c) for c in counts)
        print(f"  {kind:<13} {source_totals[kind]:>6} {before[kind]:>13} {after[kind]:>5}   {described}")
    first = summaries.get(jobs["clone"], {})
    print(
        f"  links to the source rewritten: {first.get('links_rewritten', '?')}, "
        f"media attached to their posts: {first.get('media_attached', '?')}, errors: {first.get('errors', '?')}"
    )

    print("\nTraces, as the collector received them (HTTP client spans summarised on their parent's line)")
    for job, message_id in jobs.items():
        chain = chain_of(spans, message_id)
        assert chain.send is not None
        print(f"  {job}: trace {chain.send.trace_id}")
        for line in render(spans, chain.send.trace_id, indent="  "):
            print(f"    {line}")
        print(f"    chain: {chain.describe()}")

    prometheus = stack.prometheus
    wait_until(
        lambda: prometheus.value("sum(dramatiq_message_processing_time_count)") == len(jobs),
        30,
        message="Prometheus scraped every job",
    )
    print("\nMetrics, read back from Prometheus's HTTP API")
    for title, query in QUERIES:
        rows = prometheus.query(query)
        values = ", ".join(sorted(_describe(row) for row in rows)) or "none"
        print(f"  {title}: {values}")
    exemplars = prometheus.exemplars("dramatiq_message_processing_time_bucket")
    traces = {e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]}
    print(f"  exemplars on the processing-time histogram: {len(traces)} trace ids, e.g. {sorted(traces)[:1]}")


def _request(api: ApiServer, path: str, **params: str | int) -> str:
    answer = api.post(path, **params)
    query = "&".join(f"{key}={value}" for key, value in params.items())
    print(f"  POST {path}?{query}\n    -> {json.dumps(answer)}")
    return str(answer["job_id"])


def _wait_for_outcome(collector: Collector, message_id: str, timeout: float = 90) -> CollectedSpan:
    """The job's last consumer span once the collector has it (success, or failed for good)."""

    def finished() -> CollectedSpan | None:
        chain = chain_of(collector.spans(), message_id)
        return chain.process

    span = wait_until(finished, timeout, interval=0.2, message=f"job {message_id} at the collector")
    assert span is not None  # wait_until returns a truthy value
    return span


def _records(output: str) -> list[dict[str, Any]]:
    records = []
    for line in output.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
    return records


def _clone_summaries(output: str) -> dict[str, dict[str, Any]]:
    """The worker's `clone finished` log records, by message id."""
    return {
        str(record.get("message_id")): record
        for record in _records(output)
        if record.get("event") == "clone_finished" or record.get("message") == "clone finished"
    }


def _dead_letter_reason(output: str, message_id: str) -> str:
    marker = "Job dead-lettered: "
    for record in _records(output):
        message = str(record.get("message", ""))
        if message.startswith(marker) and record.get("message_id") == message_id:
            return message.removeprefix(marker)
    return "(reason not found in worker.log)"


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{result} {count}" for result, count in counts.items() if count]
    return ", ".join(shown) or "-"


def _describe(row: dict[str, Any]) -> str:
    labels = ",".join(f"{key}={value}" for key, value in sorted(row["metric"].items()) if key != "__name__")
    value = float(row["value"][1])
    shown = f"{value:g}" if value == int(value) else f"{value:.3f}"
    return f"{{{labels}}} {shown}" if labels else shown


if __name__ == "__main__":
    sys.exit(main())
