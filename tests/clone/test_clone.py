"""`run_clone` against two real WordPress sites: what it copies, idempotency, dry runs, conflicts,
limits, failures, and what it reports (summary, spans, metrics, log line)."""

from __future__ import annotations

import json
import logging
import time

import pytest
from opentelemetry.trace import SpanKind

from worker_app.errors import InvalidJobArguments, TransientJobError
from worker_app.wordpress import CloneSettings, parse_clone_request, run_clone
from worker_app.wordpress.metrics import CLONE_ITEMS
from worker_app.wordpress.writer import Cloner
from wp_devsupport.wordpress.check import assert_cloned, by_slug, fingerprint, rest, source_url_mentions
from wp_devsupport.wordpress.sites import clone_env

ALL_COPIED = {
    "categories": {"copied": 3, "updated": 0, "skipped": 1, "failed": 0},  # "uncategorized" exists
    "tags": {"copied": 3, "updated": 0, "skipped": 0, "failed": 0},
    "media": {"copied": 2, "updated": 0, "skipped": 0, "failed": 0},
    "pages": {"copied": 2, "updated": 0, "skipped": 0, "failed": 0},
    "posts": {"copied": 3, "updated": 0, "skipped": 0, "failed": 0},
}
ALL_SKIPPED = {
    "categories": {"copied": 0, "updated": 0, "skipped": 4, "failed": 0},
    "tags": {"copied": 0, "updated": 0, "skipped": 3, "failed": 0},
    "media": {"copied": 0, "updated": 0, "skipped": 2, "failed": 0},
    "pages": {"copied": 0, "updated": 0, "skipped": 2, "failed": 0},
    "posts": {"copied": 0, "updated": 0, "skipped": 3, "failed": 0},
}


def clone(sites, settings, **options):
    return run_clone(parse_clone_request(sites.source.url, sites.target.url, options), settings)


def metric(content_type: str, result: str) -> float:
    labels = {"content_type": content_type, "result": result}
    for family in CLONE_ITEMS.collect():
        for sample in family.samples:
            if sample.name == "wp_clone_items_total" and sample.labels == labels:
                return sample.value
    return 0.0


def test_clone_copies_everything_then_a_second_run_changes_nothing(fresh_target, settings, caplog):
    copied_before = {kind: metric(kind, "copied") for kind in ALL_COPIED}
    caplog.set_level(logging.INFO, logger="worker_app.wordpress")
    started = time.monotonic()
    summary = clone(fresh_target, settings)
    first_seconds = time.monotonic() - started

    assert summary["counts"] == ALL_COPIED, summary
    assert summary["errors"] == []
    assert summary["source_authenticated"] is True
    assert summary["media_attached"] == 2
    assert summary["links_rewritten"] >= 12
    json.dumps(summary)  # JSON-able: it is the actor's result
    assert_cloned(fresh_target)
    for kind, counts in ALL_COPIED.items():
        assert metric(kind, "copied") - copied_before[kind] == counts["copied"]
    (line,) = [r for r in caplog.records if r.getMessage() == "clone finished"]
    assert line.counts == summary["counts"]
    assert line.dry_run is False

    before = fingerprint(fresh_target.target)
    again = clone(fresh_target, settings)
    assert again["counts"] == ALL_SKIPPED
    assert again["links_rewritten"] == 0
    assert again["media_attached"] == 0
    assert fingerprint(fresh_target.target) == before
    print(f"\n[clone] seeded site: first clone {first_seconds:.2f} s, second (no change) {again['duration_seconds']} s")


def test_dry_run_changes_nothing_and_reports_the_plan(fresh_target, settings):
    before = fingerprint(fresh_target.target)
    summary = clone(fresh_target, settings, dry_run=True)
    assert fingerprint(fresh_target.target) == before
    assert summary["dry_run"] is True
    assert summary["counts"] == ALL_COPIED
    plan = {kind: {entry["slug"]: entry["action"] for entry in entries} for kind, entries in summary["plan"].items()}
    assert plan["categories"] == {"uncategorized": "skip", "news": "create", "releases": "create", "guides": "create"}
    assert plan["media"] == {"harbor": "create", "sunrise": "create"}
    assert plan["pages"] == {"about": "create", "team": "create"}
    assert plan["posts"] == {"first-release": "create", "cloning-guide": "create", "upcoming": "create"}
    assert summary["links_rewritten"] > 0


def test_conflicts_skip_keeps_the_target_and_overwrite_sends_only_what_differs(fresh_target, settings):
    clone(fresh_target, settings)
    target = fresh_target.target
    about = by_slug(target, "/wp/v2/pages")["about"]
    edited = "<p>Edited on the target.</p>"
    target.query(f"UPDATE wp_posts SET post_content = '{edited}', post_title = 'Ours' WHERE ID = {about['id']};")  # noqa: S608

    skipped = clone(fresh_target, settings, content_types=["pages"])
    assert skipped["counts"]["pages"] == {"copied": 0, "updated": 0, "skipped": 2, "failed": 0}
    assert by_slug(target, "/wp/v2/pages")["about"]["content"]["raw"] == edited

    planned = clone(fresh_target, settings, content_types=["pages"], conflict="overwrite", dry_run=True)
    assert planned["plan"]["pages"] == [
        {"slug": "about", "action": "update", "fields": ["title", "content"]},
        {"slug": "team", "action": "skip", "reason": "identical on the target"},
    ]
    overwritten = clone(fresh_target, settings, content_types=["pages"], conflict="overwrite")
    assert overwritten["counts"]["pages"] == {"copied": 0, "updated": 1, "skipped": 1, "failed": 0}
    restored = by_slug(target, "/wp/v2/pages")["about"]
    assert restored["title"]["raw"] == "About us"
    assert f'<a href="{target.url}/first-release/">' in restored["content"]["raw"]
    # Overwrite is idempotent too: nothing differs any more.
    again = clone(fresh_target, settings, conflict="overwrite")
    assert {kind: counts["updated"] for kind, counts in again["counts"].items()} == dict.fromkeys(ALL_COPIED, 0)


def test_authors_are_mapped_by_display_name_when_asked(fresh_target, settings):
    clone(fresh_target, settings, content_types=["posts"], map_authors=True)
    alice = fresh_target.target.seed["author_id"]
    admin = fresh_target.target.seed["admin_id"]
    posts = by_slug(fresh_target.target, "/wp/v2/posts")
    assert posts["first-release"]["author"] == alice
    assert posts["cloning-guide"]["author"] == admin


def test_posts_alone_assign_only_terms_the_target_has_and_leave_media_links_to_the_source(fresh_target, settings):
    # Only the first two categories (by id): uncategorized (already there) and news.
    summary = clone(fresh_target, settings, content_types=["categories"], max_items=2)
    assert summary["counts"]["categories"]["copied"] == 1
    assert summary["not_read"]["categories"] == 2

    summary = clone(fresh_target, settings, content_types=["posts"])
    assert summary["counts"]["posts"]["copied"] == 3
    categories = by_slug(fresh_target.target, "/wp/v2/categories")
    posts = by_slug(fresh_target.target, "/wp/v2/posts")
    assert posts["cloning-guide"]["categories"] == [categories["news"]["id"]]  # guides was not copied
    assert posts["first-release"]["categories"] == [categories["uncategorized"]["id"]]  # WordPress's default
    assert posts["first-release"]["tags"] == []
    assert posts["first-release"]["featured_media"] == 0
    # Media were not copied, so their URLs still point at the source; everything else is rewritten.
    assert source_url_mentions(fresh_target) == 2


def test_media_over_the_size_limit_are_skipped_and_posts_still_copied(fresh_target, settings):
    summary = clone(fresh_target, settings, max_media_bytes=100)
    assert summary["counts"]["media"] == {"copied": 0, "updated": 0, "skipped": 2, "failed": 0}
    assert summary["counts"]["posts"]["copied"] == 3
    assert rest(fresh_target.target, "/wp/v2/media") == []
    assert by_slug(fresh_target.target, "/wp/v2/posts")["first-release"]["featured_media"] == 0


def test_phases_are_spans_with_http_client_spans_under_them(fresh_target, settings, spans):
    clone(fresh_target, settings)
    finished = spans.get_finished_spans()
    phases = {span.name: span for span in finished if span.name.startswith("clone.")}
    assert list(phases) == [
        "clone.read",
        "clone.terms",
        "clone.media",
        "clone.rewrite",
        "clone.pages",
        "clone.posts",
        "clone.attach",
    ]
    assert phases["clone.posts"].attributes["wordpress.clone.copied"] == 3
    assert phases["clone.terms"].attributes["wordpress.clone.skipped"] == 1
    assert phases["clone.rewrite"].attributes["wordpress.clone.links_found"] >= 12
    phase_ids = {span.context.span_id: span.name for span in phases.values()}
    http = [span for span in finished if span.kind is SpanKind.CLIENT]
    assert http, "HTTP client spans"
    for span in http:
        assert phase_ids.get(span.parent.span_id), f"{span.name} {span.attributes['url.full']} is under a phase"
        assert span.attributes["http.response.status_code"] < 400
    uploads = [
        s for s in http if s.attributes["http.request.method"] == "POST" and "/media" in s.attributes["url.full"]
    ]
    assert {phase_ids[s.parent.span_id] for s in uploads} == {"clone.media", "clone.attach"}
    secrets = (fresh_target.source.application_password, fresh_target.target.application_password)
    for span in finished:
        text = repr(dict(span.attributes or {})) + repr(span.events)
        assert not any(secret in text for secret in secrets)


def test_a_transient_failure_fails_the_job_and_the_retry_resumes_without_duplicates(
    fresh_target, settings, monkeypatch
):
    # Halfway through (terms written, media not), the target goes into WordPress's maintenance mode:
    # a real 503 with Retry-After: 600, longer than CLONE_HTTP_MAX_BACKOFF allows waiting.
    maintenance = fresh_target.target.root / ".maintenance"
    media_phase = Cloner.media

    def media_in_maintenance(self):
        maintenance.write_text("<?php $upgrading = time();")
        return media_phase(self)

    monkeypatch.setattr(Cloner, "media", media_in_maintenance)
    try:
        with pytest.raises(TransientJobError, match=r"target .*HTTP 503.*retry after 600 s"):
            clone(fresh_target, settings)
    finally:
        maintenance.unlink(missing_ok=True)
    monkeypatch.setattr(Cloner, "media", media_phase)
    assert set(by_slug(fresh_target.target, "/wp/v2/categories")) == {"uncategorized", "news", "releases", "guides"}

    resumed = clone(fresh_target, settings)
    assert resumed["counts"]["categories"] == {"copied": 0, "updated": 0, "skipped": 4, "failed": 0}
    assert resumed["counts"]["tags"]["skipped"] == 3
    assert resumed["counts"]["posts"]["copied"] == 3
    assert_cloned(fresh_target)
    terms = fresh_target.target.query("SELECT slug, COUNT(*) FROM wp_terms GROUP BY slug HAVING COUNT(*) > 1;")
    assert terms == []


def test_wrong_target_credentials_are_a_permanent_error_that_names_no_secret(wp_sites):
    wrong = "abcd efgh ijkl mnop qrst uvwx"
    env = clone_env(wp_sites, **{f"WORDPRESS_AUTH_127_0_0_1_{wp_sites.target.port}": f"admin:{wrong}"})
    with pytest.raises(InvalidJobArguments, match="rejected the credentials") as caught:
        clone(wp_sites, CloneSettings.from_env(env))
    message = str(caught.value)
    assert f"WORDPRESS_AUTH_127_0_0_1_{wp_sites.target.port}" in message
    assert wrong not in message


def test_wrong_source_credentials_fail_instead_of_silently_reading_public_content(wp_sites):
    env = clone_env(wp_sites, **{f"WORDPRESS_AUTH_127_0_0_1_{wp_sites.source.port}": "admin:nope nope nope"})
    with pytest.raises(InvalidJobArguments, match=r"source .*rejected the credentials"):
        clone(wp_sites, CloneSettings.from_env(env))


def test_missing_target_credentials_say_where_to_put_them(wp_sites):
    env = clone_env(wp_sites)
    del env[f"WORDPRESS_AUTH_127_0_0_1_{wp_sites.target.port}"]
    with pytest.raises(InvalidJobArguments, match=f"set WORDPRESS_AUTH_127_0_0_1_{wp_sites.target.port}"):
        clone(wp_sites, CloneSettings.from_env(env))


def test_credentials_from_a_mounted_secret_directory(fresh_target, tmp_path):
    secret = tmp_path / "wordpress-credentials"
    secret.mkdir()
    for site in (fresh_target.source, fresh_target.target):
        (secret / f"127.0.0.1_{site.port}").write_text(f"{site.username}:{site.application_password}\n")
    env = {key: value for key, value in clone_env(fresh_target).items() if not key.startswith("WORDPRESS_AUTH_")}
    env["CLONE_CREDENTIALS_DIR"] = str(secret)
    summary = clone(fresh_target, CloneSettings.from_env(env), content_types=["tags"])
    assert summary["counts"]["tags"]["copied"] == 3
    assert summary["source_authenticated"] is True


def test_public_source_without_credentials_copies_published_content_only(fresh_target, settings):
    env = clone_env(fresh_target)
    del env[f"WORDPRESS_AUTH_127_0_0_1_{fresh_target.source.port}"]
    summary = clone(fresh_target, CloneSettings.from_env(env))
    assert summary["source_authenticated"] is False
    assert summary["counts"]["posts"]["copied"] == 2  # the draft is not public
    assert set(by_slug(fresh_target.target, "/wp/v2/posts")) == {"first-release", "cloning-guide"}
    assert source_url_mentions(fresh_target) == 0
