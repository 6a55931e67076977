"""The parts of the fake cluster tools that need real logic (see fake_cluster_tools.sh).

  python fake_cluster_tools.py curl ARGS...      the API and the worker's /metrics, through the
                                                 port-forward: POST /pings and /clones* record a
                                                 job and answer its id; GET /metrics counts every
                                                 recorded job as processed (an instantaneous worker)
  python fake_cluster_tools.py collector-log     `kubectl logs` of the collector: spans in the format
                                                 of the debug exporter (verbosity: detailed), one
                                                 trace request -> send -> process per recorded job

$FAKE_TRACES=broken puts each consumer span in another trace; $FAKE_METRICS=double counts every
job twice. Jobs live in $FAKE_STATE/jobs.json.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

STATE = Path(os.environ["FAKE_STATE"])
JOBS = STATE / "jobs.json"


def jobs() -> list[dict[str, str]]:
    return json.loads(JOBS.read_text()) if JOBS.exists() else []


def debug_exporter_output() -> str:
    """What `kubectl logs` of the collector shows: one debug-exporter batch per service and job."""
    lines = ["2026-01-01T00:00:00.000Z\tinfo\tservice@v0.161.0/service.go:256\tEverything is ready."]
    for number, job in enumerate(jobs()):
        trace, server, producer, consumer = (uuid.uuid4().hex, *(uuid.uuid4().hex[:16] for _ in range(3)))
        consumer_trace = uuid.uuid4().hex if os.environ.get("FAKE_TRACES") == "broken" else trace
        batches = [
            ("wp-k8s-service", [(trace, "", server, f"POST {job['path']}", "Server", {})]),
            (
                "wp-k8s-service",
                [(trace, server, producer, f"send {job['queue']}", "Producer", {"messaging.message.id": job["id"]})],
            ),
            (
                "wp-k8s-service-worker",
                [
                    (
                        consumer_trace,
                        producer,
                        consumer,
                        f"process {job['queue']}",
                        "Consumer",
                        {"messaging.message.id": job["id"], "messaging.system": "dramatiq"},
                    )
                ],
            ),
        ]
        for service, spans in batches:
            lines.append(f'2026-01-01T00:00:0{number % 10}.000Z\tinfo\tTraces\t{{"resource spans": 1, "spans": 1}}')
            lines += [
                "2026-01-01T00:00:00.000Z\tinfo\tResourceSpans #0",
                "Resource SchemaURL: ",
                "Resource attributes:",
                f"     -> service.name: Str({service})",
                "ScopeSpans #0",
                "ScopeSpans SchemaURL: ",
                "InstrumentationScope worker_app.tracing 0.1.0",
            ]
            for index, (trace_id, parent, span_id, name, kind, attributes) in enumerate(spans):
                lines += [
                    f"Span #{index}",
                    f"    Trace ID       : {trace_id}",
                    f"    Parent ID      : {parent}",
                    f"    ID             : {span_id}",
                    f"    Name           : {name}",
                    f"    Kind           : {kind}",
                    "    Status code    : Unset",
                    "Attributes:",
                    *(f"     -> {key}: Str({value})" for key, value in attributes.items()),
                ]
            lines.append('\t{"otelcol.component.id": "debug", "otelcol.component.kind": "exporter"}')
    return "\n".join(lines) + "\n"


def metrics_text() -> str:
    factor = 2 if os.environ.get("FAKE_METRICS") == "double" else 1
    pings = sum(1 for job in jobs() if job["queue"] == "ping") * factor
    clones = sum(1 for job in jobs() if job["queue"] == "clone-queue") * factor
    return (
        "# HELP dramatiq_messages_processed_total Deliveries finished.\n"
        "# TYPE dramatiq_messages_processed_total counter\n"
        f'dramatiq_messages_processed_total{{actor="ping",outcome="success",queue="ping"}} {pings + 1.0}\n'
        f'dramatiq_messages_processed_total{{actor="clone_wordpress",outcome="failed",queue="clone-queue"}} {float(clones)}\n'
        "dramatiq_broker_up 1.0\n"
    )


def curl(args: list[str]) -> int:
    method, output, url = "GET", None, None
    rest = iter(args)
    for arg in rest:
        if arg == "-X":
            method = next(rest)
        elif arg == "-o":
            output = next(rest)
        elif not arg.startswith("-"):
            url = arg
    assert url is not None, args
    path = url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
    if method == "POST":
        queue = "ping" if path == "pings" else "clone-queue"
        job = {"queue": queue, "id": str(uuid.uuid4()), "path": "/" + path}
        JOBS.write_text(json.dumps([*jobs(), job]))
        body = json.dumps({"job_id": job["id"]})
    elif path == "metrics":
        body = metrics_text()
    elif path == "healthz":
        body = '{"status":"ok"}'
    else:
        print(f"curl: (22) The requested URL returned error: 404 ({url})", file=sys.stderr)
        return 22
    if output != "/dev/null":
        sys.stdout.write(body)
    return 0


def main() -> int:
    if sys.argv[1] == "curl":
        return curl(sys.argv[2:])
    if sys.argv[1] == "collector-log":
        sys.stdout.write(debug_exporter_output())
        return 0
    print(f"fake_cluster_tools.py: unknown command {sys.argv[1]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
