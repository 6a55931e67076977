#!/usr/bin/env python3
"""Assertions of ci/kind/kind-e2e.sh, in plain Python (standard library only, Python 3.9+).

  e2e_check.py metrics --baseline BEFORE --current AFTER --expect QUEUE,ACTOR,OUTCOME=N ...
      The worker's /metrics scraped before and after the jobs were sent: for each --expect,
      `dramatiq_messages_processed_total{queue,actor,outcome}` grew by exactly N.
  e2e_check.py traces --log COLLECTOR_LOG --job QUEUE=MESSAGE_ID ... [--api-service NAME]
      The collector's debug exporter output (verbosity: detailed, read with `kubectl logs`): for
      each job, a `send QUEUE` PRODUCER span and a `process QUEUE` CONSUMER span carrying its
      `messaging.message.id`, in one trace with the API's SERVER span (service NAME) for the request
      that enqueued it: request -> send -> process, each the parent of the next.

Exit status: 0 all expectations hold, 1 not (yet): the caller polls until a deadline, then shows
the last report; 2 bad input. The report (stdout) says what was found and what is missing.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
PROCESSED = "dramatiq_messages_processed_total"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Samples of a Prometheus text exposition, keyed by (name, sorted labels). Comments skipped."""
    samples: Samples = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = tuple(sorted(_LABEL.findall(match.group("labels") or "")))
        try:
            samples[(match.group("name"), labels)] = float(match.group("value"))
        except ValueError:
            continue
    return samples


def processed(samples: Samples, queue: str, actor: str, outcome: str) -> float:
    labels = tuple(sorted({"queue": queue, "actor": actor, "outcome": outcome}.items()))
    return samples.get((PROCESSED, labels), 0.0)


def check_metrics(baseline: str, current: str, expectations: list[tuple[str, str, str, int]]) -> tuple[bool, str]:
    before, after = parse_metrics(baseline), parse_metrics(current)
    ok = True
    lines = []
    for queue, actor, outcome, wanted in expectations:
        delta = processed(after, queue, actor, outcome) - processed(before, queue, actor, outcome)
        if delta == wanted:
            verdict = "ok"
        elif delta < wanted:
            verdict, ok = "waiting", False
        else:
            verdict, ok = "TOO MANY (a job processed twice?)", False
        lines.append(
            f"{PROCESSED}{{queue={queue!r}, actor={actor!r}, outcome={outcome!r}}}: +{delta:g}, expected +{wanted}: {verdict}"
        )
    return ok, "\n".join(lines)


def parse_expect(value: str) -> tuple[str, str, str, int]:
    try:
        key, count = value.rsplit("=", 1)
        queue, actor, outcome = key.split(",")
        return queue, actor, outcome, int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected QUEUE,ACTOR,OUTCOME=N, got {value!r}") from None


# --------------------------------------------------------------------------- traces


@dataclass
class Span:
    trace_id: str = ""
    parent_id: str = ""
    span_id: str = ""
    name: str = ""
    kind: str = ""
    status: str = ""
    service: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.kind or '?'} {self.name!r} ({self.service}) trace={self.trace_id} id={self.span_id} parent={self.parent_id or '-'}"


_FIELD = re.compile(r"^ {4}(Trace ID|Parent ID|ID|Name|Kind|Status code)\s*: ?(.*)$")
_ATTRIBUTE = re.compile(r"^ {5}-> ([^:]+): (?:\w+\((.*)\)|(.*))$")
_FIELD_NAMES = {
    "Trace ID": "trace_id",
    "Parent ID": "parent_id",
    "ID": "span_id",
    "Name": "name",
    "Kind": "kind",
    "Status code": "status",
}


def parse_debug_spans(text: str) -> list[Span]:
    """Spans printed by the collector's debug exporter with `verbosity: detailed`.

    The exporter prints, per batch: `ResourceSpans #n`, `Resource attributes:` (`-> key: Type(value)`),
    then per span `Span #n`, its fields (`    Trace ID       : ...`), `Attributes:`, `Events:`,
    `Links:`. Other log lines of the collector are ignored.
    """
    spans: list[Span] = []
    service = ""
    section = ""  # resource | span | span-attributes | other
    current: Span | None = None
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        # The first line of each batch follows the log prefix (time, level) on the same line.
        if "ResourceSpans #" in line:
            section, service, current = "resource", "", None
            continue
        if line == "Resource attributes:":
            section = "resource"
            continue
        if line.startswith("ScopeSpans #"):
            section, current = "scope", None
            continue
        if line.startswith("Span #"):
            current = Span(service=service)
            spans.append(current)
            section = "span"
            continue
        if current is not None and line == "Attributes:":
            section = "span-attributes"
            continue
        if line in ("Events:", "Links:"):
            section = "other"
            continue
        if section == "span" and current is not None:
            match = _FIELD.match(line)
            if match:
                setattr(current, _FIELD_NAMES[match.group(1)], match.group(2).strip())
            continue
        match = _ATTRIBUTE.match(line)
        if not match:
            continue
        key = match.group(1)
        value = match.group(2) if match.group(2) is not None else (match.group(3) or "")
        if section == "resource" and key == "service.name":
            service = value
        elif section == "span-attributes" and current is not None:
            current.attributes[key] = value
    return spans


def check_traces(text: str, jobs: list[tuple[str, str]], api_service: str) -> tuple[bool, str]:
    spans = parse_debug_spans(text)
    by_id = {(span.trace_id, span.span_id): span for span in spans}
    ok = True
    lines = [f"{len(spans)} spans in the collector output"]
    for queue, message_id in jobs:
        problems = []
        mine = [span for span in spans if span.attributes.get("messaging.message.id") == message_id]
        producers = [s for s in mine if s.kind == "Producer" and s.name == f"send {queue}"]
        consumers = [s for s in mine if s.kind == "Consumer" and s.name == f"process {queue}"]
        if len(producers) != 1:
            problems.append(f"expected one PRODUCER span 'send {queue}', found {len(producers)}")
        if not consumers:
            problems.append(f"no CONSUMER span 'process {queue}' yet")
        request: Span | None = None
        if not problems:
            producer = producers[0]
            request = by_id.get((producer.trace_id, producer.parent_id))
            if request is None:
                problems.append(f"the producer's parent span {producer.parent_id or '(none)'} is not in the output")
            elif request.kind != "Server" or request.service != api_service:
                problems.append(
                    f"the producer's parent is {request.describe()}, expected a Server span of {api_service}"
                )
            for consumer in consumers:
                if consumer.trace_id != producer.trace_id:
                    problems.append(f"consumer in trace {consumer.trace_id}, producer in {producer.trace_id}")
                elif consumer.parent_id != producer.span_id:
                    problems.append(f"consumer's parent is {consumer.parent_id}, not the producer {producer.span_id}")
        if problems or request is None:
            ok = False
            lines.append(f"{queue} {message_id}: MISSING: " + "; ".join(problems))
            lines.extend(f"    seen: {span.describe()}" for span in mine)
        else:
            chain = [request, producers[0], *consumers]
            lines.append(
                f"{queue} {message_id}: ok, trace {request.trace_id}: " + " -> ".join(repr(s.name) for s in chain)
            )
    return ok, "\n".join(lines)


def parse_job(value: str) -> tuple[str, str]:
    queue, sep, message_id = value.partition("=")
    if not sep or not queue or not message_id:
        raise argparse.ArgumentTypeError(f"expected QUEUE=MESSAGE_ID, got {value!r}")
    return queue, message_id


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    metrics = commands.add_parser("metrics", help="processed-message counters grew as expected")
    metrics.add_argument("--baseline", type=Path, required=True, help="/metrics before the jobs were sent")
    metrics.add_argument("--current", type=Path, required=True, help="/metrics now")
    metrics.add_argument("--expect", type=parse_expect, action="append", required=True, metavar="QUEUE,ACTOR,OUTCOME=N")
    traces = commands.add_parser("traces", help="each job traced from the API request to the worker")
    traces.add_argument("--log", type=Path, required=True, help="the collector's log (kubectl logs)")
    traces.add_argument("--job", type=parse_job, action="append", required=True, metavar="QUEUE=MESSAGE_ID")
    traces.add_argument(
        "--api-service", default="wp-k8s-service", help="service.name of the API (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "metrics":
            ok, report = check_metrics(
                args.baseline.read_text(encoding="utf-8"), args.current.read_text(encoding="utf-8"), args.expect
            )
        else:
            ok, report = check_traces(
                args.log.read_text(encoding="utf-8", errors="replace"), args.job, args.api_service
            )
    except OSError as error:
        print(f"e2e_check: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
