"""One trace as the collector received it, as an indented tree: what `make demo` prints for each job.

The chain of a job is request (the API's SERVER span) -> `send <queue>` (PRODUCER) -> `process <queue>`
(CONSUMER) -> the clone's phase spans (`clone.read`, `clone.terms`, ...). HTTP client spans are
summarised on their parent's line (how many requests, by method and site) and the ASGI
instrumentation's internal `http send`/`http receive` spans are counted, not listed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .stack import CollectedSpan

#: Span attribute of the clone's HTTP client spans: which site (`source` or `target`).
SITE_ROLE = "wordpress.site.role"
METHOD = "http.request.method"
ERROR = 2  # OTLP status code
#: Width of the name column at the root; each level of indentation takes from it, so the columns line up.
NAME_WIDTH = 30


@dataclass(frozen=True)
class Chain:
    """A job's spans along the chain, and whether each is the child of the one before."""

    request: CollectedSpan | None
    send: CollectedSpan | None
    process: CollectedSpan | None
    phases: tuple[CollectedSpan, ...]

    @property
    def complete(self) -> bool:
        """request -> send -> process all present, each the parent of the next, phases under process."""
        if self.request is None or self.send is None or self.process is None:
            return False
        return (
            self.send.parent_span_id == self.request.span_id
            and self.process.parent_span_id == self.send.span_id
            and len({self.request.trace_id, self.send.trace_id, self.process.trace_id}) == 1
            and all(phase.parent_span_id == self.process.span_id for phase in self.phases)
        )

    def describe(self) -> str:
        names = [
            span.name if span is not None else f"no {what} span"
            for what, span in (("request", self.request), ("send", self.send), ("process", self.process))
        ]
        if self.phases:
            names.append(f"{len(self.phases)} phases")
        verdict = "complete, each span the child of the one before" if self.complete else "INCOMPLETE"
        return f"{' -> '.join(names)}: {verdict}"


def chain_of(spans: list[CollectedSpan], message_id: str) -> Chain:
    """The chain of the job `message_id` among `spans` (all the collector received)."""
    send = next(
        (s for s in spans if s.kind == "producer" and s.attributes.get("messaging.message.id") == message_id), None
    )
    if send is None:
        return Chain(None, None, None, ())
    by_id = {s.span_id: s for s in spans if s.trace_id == send.trace_id}
    request = by_id.get(send.parent_span_id)
    consumers = [s for s in by_id.values() if s.kind == "consumer" and s.parent_span_id == send.span_id]
    # A retried job has one consumer span per attempt; the last one is the outcome.
    process = max(consumers, key=lambda s: s.start_ns) if consumers else None
    phases: tuple[CollectedSpan, ...] = ()
    if process is not None:
        phases = tuple(
            sorted(
                (s for s in by_id.values() if s.name.startswith("clone.") and s.parent_span_id == process.span_id),
                key=lambda s: s.start_ns,
            )
        )
    return Chain(request if request is not None and request.kind == "server" else None, send, process, phases)


def render(spans: list[CollectedSpan], trace_id: str, indent: str = "  ") -> list[str]:
    """The lines of the tree of trace `trace_id`, roots first, children in start order."""
    trace = [s for s in spans if s.trace_id == trace_id]
    ids = {s.span_id for s in trace}
    children: dict[str, list[CollectedSpan]] = {}
    for span in trace:
        children.setdefault(span.parent_span_id if span.parent_span_id in ids else "", []).append(span)
    lines: list[str] = []

    def walk(span: CollectedSpan, depth: int) -> None:
        kids = sorted(children.get(span.span_id, []), key=lambda s: s.start_ns)
        shown = [k for k in kids if k.kind != "client" and not _asgi_internal(k)]
        lines.append(f"{indent * depth}{_line(span, kids, NAME_WIDTH - len(indent) * depth)}")
        for kid in shown:
            walk(kid, depth + 1)

    for root in sorted(children.get("", []), key=lambda s: s.start_ns):
        walk(root, 0)
    return lines


def _asgi_internal(span: CollectedSpan) -> bool:
    return span.kind == "internal" and span.name.endswith((" http send", " http receive"))


def _line(span: CollectedSpan, kids: list[CollectedSpan], width: int) -> str:
    parts = [f"{span.name:<{width}}", f"{span.kind:<8}", f"{span.service_name:<21}", f"{_duration(span.seconds):>6}"]
    if span.status_code == ERROR:
        parts.append(f"ERROR {span.attributes.get('error.type', '')}".rstrip())
    counts = {
        key.removeprefix("wordpress.clone."): value
        for key, value in span.attributes.items()
        if key in ("wordpress.clone.copied", "wordpress.clone.updated", "wordpress.clone.skipped")
        or key in ("wordpress.clone.links_found", "wordpress.clone.media_attached")
    }
    if any(counts.values()):
        parts.append(" ".join(f"{key}={value}" for key, value in counts.items() if value))
    requests = Counter(
        f"{k.attributes.get(METHOD, k.name)} {k.attributes.get(SITE_ROLE, '?')}" for k in kids if k.kind == "client"
    )
    if requests:
        failed = sum(1 for k in kids if k.kind == "client" and k.status_code == ERROR)
        summary = ", ".join(f"{count} {what}" for what, count in sorted(requests.items()))
        parts.append(f"HTTP: {summary}" + (f" ({failed} failed)" if failed else ""))
    internal = sum(1 for k in kids if _asgi_internal(k))
    if internal:
        parts.append(f"(+{internal} ASGI send/receive spans)")
    return "  ".join(parts).rstrip()


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
