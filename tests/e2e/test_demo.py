"""`make demo` itself (`python -m wp_devsupport.demo`), run as a user runs it, checked by what it prints.

The README's API under uvicorn, two WordPress sites, Redis, the collector, the worker and Prometheus,
all on loopback: the clone copied the source's content, the refused clone was dead-lettered for
good, the scheduled clone ran after its delay and duplicated nothing, every job's trace is one chain
request -> send -> process (-> the clone's phases), Prometheus counted it all, and nothing the demo
started is left listening after it exits.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wp_devsupport.repo import REPO
from wp_devsupport.stack import CollectedSpan, require_tools
from wp_devsupport.trace_tree import chain_of, render

pytestmark = pytest.mark.integration

KINDS = ("categories", "tags", "media", "pages", "posts")
PHASES = ["clone.read", "clone.terms", "clone.media", "clone.rewrite", "clone.pages", "clone.posts", "clone.attach"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, float, Path]:
    try:
        require_tools("otelcol", "prometheus")
    except FileNotFoundError as error:
        pytest.fail(str(error))
    logs = tmp_path_factory.mktemp("demo") / "logs"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "wp_devsupport.demo", "--logs", str(logs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    seconds = time.monotonic() - started
    print(f"\n[demo] ran in {seconds:.1f} s", file=sys.stderr)
    if result.returncode != 0:
        tails = "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(logs.glob("*.log"))
            if path.is_file()
        )
        pytest.fail(f"the demo exited {result.returncode}\n{result.stdout}\n{result.stderr}\n{tails}")
    return result.stdout, seconds, logs


def section(output: str, title: str) -> str:
    """The lines under the heading that starts with `title`, up to the next blank line."""
    start = output.index(f"\n{title}") + 1
    end = output.find("\n\n", start)
    return output[start : end if end != -1 else len(output)]


def test_the_clone_copied_the_source_and_the_scheduled_clone_duplicated_nothing(demo):
    output, _, _ = demo
    table = section(output, "What was copied")
    for kind in KINDS:
        match = re.search(rf"^  {kind} +(\d+) +(\d+) +(\d+)   (.+) / (.+)$", table, re.M)
        assert match, f"no row for {kind} in:\n{table}"
        source, before, after = (int(match.group(i)) for i in (1, 2, 3))
        first, scheduled = match.group(4), match.group(5)
        assert source > 0, kind
        assert after == source, f"{kind}: the target holds what the source holds"
        copied = int(re.search(r"copied (\d+)", first).group(1))  # type: ignore[union-attr]
        assert copied == after - before, f"{kind}: the first clone copied what the target lacked ({first})"
        assert scheduled == f"skipped {source}", f"{kind}: the second clone found everything there ({scheduled})"
    assert re.search(r"links to the source rewritten: [1-9]\d*, media attached to their posts: 2, errors: 0", table)


def test_each_job_ended_as_designed(demo):
    output, _, _ = demo
    jobs = section(output, "Jobs")
    assert re.search(r"^  clone +\S+  done in [\d.]+ s", jobs, re.M), jobs
    assert re.search(
        r"^  refused +\S+  failed for good, dead-lettered: source_url: host blog\.example\.com is not in "
        r"CLONE_ALLOWED_HOSTS",
        jobs,
        re.M,
    ), jobs
    delayed = re.search(r"^  scheduled +\S+  done in [\d.]+ s \(started ([\d.]+) s after the send\)", jobs, re.M)
    assert delayed, jobs
    assert float(delayed.group(1)) >= 2.0, "the scheduled clone waited for its delay"


def test_every_trace_is_one_chain_from_the_request_to_the_clone_phases(demo):
    output, _, _ = demo
    traces = section(output, "Traces, as the collector received them")
    chains = re.findall(r"^    chain: (.*)$", traces, re.M)
    assert chains == [
        "POST /clones -> send clone-queue -> process clone-queue -> 7 phases: "
        "complete, each span the child of the one before",
        "POST /clones -> send clone-queue -> process clone-queue: complete, each span the child of the one before",
        "POST /clones/scheduled -> send clone-queue -> process clone-queue -> 7 phases: "
        "complete, each span the child of the one before",
    ], traces
    for phase in PHASES:
        assert len(re.findall(rf"^ +{re.escape(phase)} +internal +wp-k8s-service-worker ", traces, re.M)) == 2
    assert re.search(r"clone\.read .*HTTP: \d+ GET source, \d+ GET target", traces), "client spans summarised"
    assert "ERROR worker_app.errors.InvalidJobArguments" in traces
    assert re.search(r"^ +POST /clones +server +wp-k8s-service ", traces, re.M), "the API's own request span"


def test_prometheus_counted_every_job_and_item(demo):
    output, _, _ = demo
    metrics = section(output, "Metrics, read back from Prometheus")
    assert "{outcome=success,queue=clone-queue} 2" in metrics
    assert "{outcome=failed,queue=clone-queue} 1" in metrics
    assert "errors, by actor and type: {actor=clone_wordpress,error_type=InvalidJobArguments} 1" in metrics
    assert "dead-lettered, by queue: {queue=clone-queue} 1" in metrics
    assert "{content_type=posts,result=copied} 3" in metrics
    assert "worker processes up: 2" in metrics
    assert re.search(r"exemplars on the processing-time histogram: [1-9]\d* trace ids", metrics)


def test_it_is_fast_stops_everything_and_leaves_its_logs(demo):
    output, seconds, logs = demo
    assert seconds < 90, f"the demo took {seconds:.0f} s"
    ports = {int(port) for port in re.findall(r"(?:http|redis)://127\.0\.0\.1:(\d+)", section(output, "On loopback"))}
    assert len(ports) >= 7, "API, worker, Prometheus, collector, Redis and both sites"
    for port in sorted(ports):
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
    for name in ("api.log", "worker.log", "otelcol.log", "prometheus.log", "traces.jsonl"):
        assert (logs / name).stat().st_size > 0, name
    assert "Stopping what the demo started..." in output


# ----------------------------------------------------------------------------- the chain check itself


def span(name: str, kind: str, span_id: str, parent: str, trace_id: str = "t1", **attributes: object) -> CollectedSpan:
    return CollectedSpan(
        name=name,
        kind=kind,
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        service_name="svc",
        attributes=dict(attributes),
        links=(),
        status_code=0,
        start_ns=int(span_id, 16),
        end_ns=int(span_id, 16) + 1_000_000,
    )


def test_a_chain_is_complete_only_when_each_span_is_the_child_of_the_one_before():
    request = span("POST /clones", "server", "01", "")
    send = span("send clone-queue", "producer", "02", "01", **{"messaging.message.id": "m"})
    process = span("process clone-queue", "consumer", "03", "02")
    phase = span("clone.read", "internal", "04", "03")
    client = span("GET", "client", "05", "04", **{"http.request.method": "GET", "wordpress.site.role": "source"})
    chain = chain_of([request, send, process, phase, client], "m")
    assert chain.complete
    assert chain.phases == (phase,)
    lines = render([request, send, process, phase, client], "t1")
    assert [line.split()[0] for line in lines] == ["POST", "send", "process", "clone.read"]
    assert lines[-1].endswith("HTTP: 1 GET source")

    # The consumer in a trace of its own (context not propagated): no request, no chain.
    orphan = span("process clone-queue", "consumer", "03", "", trace_id="t2")
    assert not chain_of([request, send, orphan], "m").complete
    assert "no process span: INCOMPLETE" in chain_of([request, send, orphan], "m").describe()
    # A send outside any request (no server span as its parent).
    lonely = span("send clone-queue", "producer", "02", "", **{"messaging.message.id": "m"})
    assert not chain_of([lonely, process], "m").complete
    assert chain_of([], "m").describe().startswith("no request span -> no send span")
