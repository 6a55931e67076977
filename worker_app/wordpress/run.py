"""`run_clone`: the whole clone, one span per phase, one summary log line at the end."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace

from ..errors import InvalidJobArguments
from .client import WordPressAPIError, WordPressClient
from .clone_args import CloneOptions, CloneRequest
from .credentials import Credentials
from .reader import check_target_user, index_target, read_source, source_edit_context
from .rewrite import LinkRewriter
from .safety import HostPolicy
from .settings import CloneSettings
from .summary import Summary
from .transport import guarded_session
from .writer import Cloner

_tracer = trace.get_tracer("worker_app.wordpress")
#: Span attribute of a phase span: the phase (`read`, `terms`, `media`, `rewrite`, `pages`, `posts`, `attach`).
PHASE = "wordpress.clone.phase"
#: Prefix of a phase span's item counts: `wordpress.clone.copied`, `.updated`, `.skipped`, `.failed`.
COUNT_PREFIX = "wordpress.clone."
#: Span attribute of the rewrite phase: links to the source found in the pages and posts read.
LINKS_FOUND = "wordpress.clone.links_found"
#: Span attribute of the attach phase: media attached to their post or page.
MEDIA_ATTACHED = "wordpress.clone.media_attached"
logger = logging.getLogger("worker_app.wordpress")


def run_clone(request: CloneRequest, settings: CloneSettings) -> dict[str, Any]:
    """Copy the source site's content to the target; returns the JSON-able summary.

    `request` is validated (`parse_clone_request`); here the operator's policy decides where it may
    connect.

    Raises `InvalidJobArguments` when the job can never succeed (a refused host or address, missing
    or rejected credentials, not a WordPress site) and `TransientJobError` when it may succeed later
    (timeouts, 5xx after retries); a retried job resumes without duplicates (items match by slug).
    """
    started = time.monotonic()
    source_url, target_url, options = request.source_url, request.target_url, request.options
    policy = HostPolicy(allowed_hosts=settings.allowed_hosts, allowed_networks=settings.allowed_networks)
    # Before any request: a refused URL costs nothing and sends no packet.
    policy.check_url("source_url", source_url)
    policy.check_url("target_url", target_url)
    target_credentials = _credentials(settings, target_url)
    if target_credentials is None:
        host, port = _host_port(target_url)
        raise InvalidJobArguments(
            f"target_url: no credentials configured for {host}; set {settings.credentials.describe(host, port)}"
        )

    summary = Summary(
        source_url=source_url,
        target_url=target_url,
        dry_run=options.dry_run,
        conflict=options.conflict,
        content_types=options.content_types,
    )
    verify: bool | str = settings.ca_file if settings.tls_verify and settings.ca_file else settings.tls_verify
    with guarded_session(policy, user_agent=settings.user_agent, verify=verify) as session:

        def client(role: str, url: str, credentials: Credentials | None) -> WordPressClient:
            return WordPressClient(
                role=role, site_url=url, settings=settings, policy=policy, session=session, credentials=credentials
            )

        source = client("source", source_url, _credentials(settings, source_url))
        target = client("target", target_url, target_credentials)
        cloner = _read(source, target, options, summary)
        cloner.media_limit = min(options.max_media_bytes, settings.max_media_bytes)
        _write(cloner, options.content_types, summary)

    result = summary.as_dict(time.monotonic() - started)
    result["requests"] = {"source": source.requests_sent, "target": target.requests_sent}
    extra: dict[str, Any] = {"plan": result["plan"]} if options.dry_run else {}
    logger.info(
        "clone finished",
        extra={
            **extra,
            "event": "clone_finished",
            "source_url": source_url,
            "target_url": target_url,
            "dry_run": options.dry_run,
            "conflict": options.conflict,
            "counts": result["counts"],
            "links_rewritten": summary.links_rewritten,
            "media_attached": summary.media_attached,
            "errors": len(summary.errors) + summary.errors_dropped,
            "duration_seconds": result["duration_seconds"],
        },
    )
    return result


def _read(source: WordPressClient, target: WordPressClient, options: CloneOptions, summary: Summary) -> Cloner:
    with _phase("read", summary, ()):
        try:
            target.discover()
            check_target_user(target, options)
            source.discover()
            edit_context = source_edit_context(source)
            content = read_source(source, options, edit_context=edit_context)
            index = index_target(target, content, users=options.map_authors)
        except WordPressAPIError as error:
            # A 4xx while only reading means the sites cannot be cloned as configured.
            raise InvalidJobArguments(f"reading failed: {error}") from None
    summary.source_authenticated = edit_context
    for kind, total in content.totals.items():
        if total > len(content.items.get(kind, [])):
            summary.not_read[kind] = total - len(content.items[kind])
    return Cloner(
        source=source,
        target=target,
        options=options,
        content=content,
        index=index,
        summary=summary,
        rewriter=LinkRewriter(source_url=source.site_url, target_url=target.site_url),
        media_limit=options.max_media_bytes,
    )


def _write(cloner: Cloner, kinds: tuple[str, ...], summary: Summary) -> None:
    """The write phases in dependency order; types not chosen are only mapped by slug."""
    terms = tuple(kind for kind in ("categories", "tags") if kind in kinds)
    if terms:
        with _phase("terms", summary, terms):
            for taxonomy in terms:
                cloner.terms(taxonomy)
    for taxonomy in ("categories", "tags"):
        if taxonomy not in kinds:
            cloner.map_existing_terms(taxonomy)
    if "media" in kinds:
        with _phase("media", summary, ("media",)):
            cloner.media()
    else:
        cloner.map_existing_media()
    written = tuple(kind for kind in ("pages", "posts") if kind in kinds)
    if written:
        with _phase("rewrite", summary, ()) as span:
            cloner.rewrite(written)
            # Found in every page and post read; summary.links_rewritten counts those written.
            span.set_attribute(LINKS_FOUND, sum(cloner.rewrite_counts.values()))
    for kind in ("pages", "posts"):
        if kind in kinds:
            with _phase(kind, summary, (kind,)):
                cloner.posts(kind)
        else:
            cloner.map_existing_posts(kind)
    if "media" in kinds and written:
        with _phase("attach", summary, ()) as span:
            cloner.attach()
            span.set_attribute(MEDIA_ATTACHED, summary.media_attached)


def _host_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port


def _credentials(settings: CloneSettings, url: str) -> Credentials | None:
    host, port = _host_port(url)
    return settings.credentials.lookup(host, port)


@contextlib.contextmanager
def _phase(name: str, summary: Summary, kinds: tuple[str, ...]) -> Iterator[trace.Span]:
    """A child span of the current (consumer) span for one phase, with its item counts."""
    with _tracer.start_as_current_span(f"clone.{name}", attributes={PHASE: name}) as span:
        yield span
        if kinds:
            for result, count in summary.phase_counts(kinds).items():
                span.set_attribute(f"{COUNT_PREFIX}{result}", count)
