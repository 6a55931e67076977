"""The REST client against the real sites (pagination, discovery, retries on WordPress's own 503,
limits) and the address policy (allowlist, non-public addresses, the per-connection peer check)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from opentelemetry.trace import SpanKind, StatusCode

from worker_app.errors import InvalidJobArguments, TransientJobError
from worker_app.wordpress import CloneSettings
from worker_app.wordpress.client import WordPressClient
from worker_app.wordpress.safety import AddressRefused, HostPolicy
from worker_app.wordpress.transport import guarded_session
from wp_devsupport.wordpress.sites import clone_env


def make_client(site, settings, *, authenticated=True, sleep=time.sleep):
    policy = HostPolicy(allowed_hosts=settings.allowed_hosts, allowed_networks=settings.allowed_networks)
    session = guarded_session(policy, user_agent="tests", verify=True)
    credentials = settings.credentials.lookup("127.0.0.1", site.port) if authenticated else None
    return WordPressClient(
        role="source",
        site_url=site.url,
        settings=settings,
        policy=policy,
        session=session,
        credentials=credentials,
        sleep=sleep,
    )


def test_pagination_follows_x_wp_totalpages_and_stops_at_the_limit(wp_sites):
    settings = CloneSettings.from_env(clone_env(wp_sites, CLONE_PER_PAGE="1"))
    client = make_client(wp_sites.source, settings)
    params = {"context": "edit", "status": "publish,draft", "orderby": "id", "order": "asc"}
    listing = client.list_all("/wp/v2/posts", params, limit=100)
    assert [post["slug"] for post in listing.items] == ["first-release", "cloning-guide", "upcoming"]
    assert listing.total == 3
    assert client.requests_sent == 3  # one page each, and no request past X-WP-TotalPages
    cut = make_client(wp_sites.source, settings).list_all("/wp/v2/posts", params, limit=2)
    assert [post["slug"] for post in cut.items] == ["first-release", "cloning-guide"]
    assert cut.total == 3


def test_anonymous_reads_see_only_published_content(wp_sites, settings):
    client = make_client(wp_sites.source, settings, authenticated=False)
    slugs = {post["slug"] for post in client.list_all("/wp/v2/posts", {}, limit=100).items}
    assert slugs == {"first-release", "cloning-guide"}


def test_discovery_falls_back_to_rest_route_without_pretty_permalinks(wp_sites, settings):
    source = wp_sites.source
    # Plain permalinks, and the cached rewrite rules dropped (WordPress rebuilds them): no /wp-json/.
    source.query(
        "UPDATE wp_options SET option_value = '' WHERE option_name = 'permalink_structure';"
        "UPDATE wp_options SET option_value = '' WHERE option_name = 'rewrite_rules';"
    )
    try:
        # WordPress now answers /wp-json/ with its front page, not the API.
        assert "application/json" not in requests.get(f"{source.url}/wp-json/", timeout=10).headers["Content-Type"]
        client = make_client(source, settings)
        client.discover()
        assert client.route_url("/wp/v2/posts") == f"{source.url}/?rest_route=/wp/v2/posts"
        assert len(client.list_all("/wp/v2/tags", {}, limit=10).items) == 3
    finally:
        source.query(
            "UPDATE wp_options SET option_value = '/%postname%/' WHERE option_name = 'permalink_structure';"
            "UPDATE wp_options SET option_value = '' WHERE option_name = 'rewrite_rules';"
        )


def test_a_retry_after_longer_than_allowed_fails_as_transient_at_once(wp_sites, settings):
    maintenance = wp_sites.source.root / ".maintenance"
    maintenance.write_text("<?php $upgrading = time();")  # WordPress answers 503, Retry-After: 600
    slept = []
    try:
        with pytest.raises(TransientJobError, match=r"HTTP 503, asked to retry after 600 s"):
            make_client(wp_sites.source, settings, sleep=slept.append).get_json("/wp/v2/tags")
    finally:
        maintenance.unlink()
    assert slept == []


def test_retry_after_is_honoured_and_each_attempt_is_a_client_span(wp_sites, spans):
    settings = CloneSettings.from_env(clone_env(wp_sites, CLONE_HTTP_MAX_BACKOFF="900"))
    maintenance = wp_sites.source.root / ".maintenance"
    maintenance.write_text("<?php $upgrading = time();")
    slept = []

    def sleep(seconds):  # maintenance ends while the client waits
        slept.append(seconds)
        maintenance.unlink()

    try:
        tags = make_client(wp_sites.source, settings, sleep=sleep).get_json("/wp/v2/tags")
    finally:
        maintenance.unlink(missing_ok=True)
    assert len(tags) == 3
    assert slept == [600.0]
    first, second = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert first.name == "GET"
    assert first.attributes["http.response.status_code"] == 503
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes["http.response.status_code"] == 200
    assert second.attributes["http.request.resend_count"] == 1
    assert second.attributes["url.full"] == f"{wp_sites.source.url}/wp-json/wp/v2/tags"
    assert second.attributes["server.port"] == wp_sites.source.port


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel's backlog) and never answers: a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_site_that_never_answers_is_retried_then_fails_as_transient(wp_sites, silent_port):
    settings = CloneSettings.from_env(clone_env(wp_sites, CLONE_HTTP_TIMEOUT="0.3", CLONE_HTTP_RETRIES="2"))
    policy = HostPolicy(allowed_hosts=settings.allowed_hosts, allowed_networks=settings.allowed_networks)
    client = WordPressClient(
        role="source",
        site_url=f"http://127.0.0.1:{silent_port}",
        settings=settings,
        policy=policy,
        session=guarded_session(policy, user_agent="tests", verify=True),
        credentials=None,
    )
    started = time.monotonic()
    with pytest.raises(TransientJobError, match=r"no response within 0.3 s \(gave up after 3 attempts\)"):
        client.discover()
    assert client.requests_sent == 3
    assert time.monotonic() - started < 5


def test_response_and_media_size_limits(wp_sites):
    settings = CloneSettings.from_env(clone_env(wp_sites, CLONE_MAX_RESPONSE_BYTES="1024"))
    client = make_client(wp_sites.source, settings)
    with pytest.raises(InvalidJobArguments, match="CLONE_MAX_RESPONSE_BYTES"):
        client.get_json("/wp/v2/posts", {"context": "edit"})
    url = wp_sites.source.seed["urls"]["sunrise"]
    assert client.download(url, limit=100) is None
    body, content_type = client.download(url, limit=1_000_000)
    assert content_type == "image/png"
    assert body.startswith(b"\x89PNG")


def test_policy_allowlist_and_non_public_addresses():
    policy = HostPolicy(
        allowed_hosts=("blog.example.com", "*.example.org", "10.1.2.3", "localhost"), allowed_networks=()
    )
    assert policy.host_allowed("BLOG.example.com.")
    assert policy.host_allowed("a.b.example.org")
    assert not policy.host_allowed("example.org.evil.net")
    assert not policy.host_allowed("example.org")
    with pytest.raises(InvalidJobArguments, match=r"host other\.example\.com is not in CLONE_ALLOWED_HOSTS"):
        policy.check_url("source_url", "https://other.example.com")
    with pytest.raises(InvalidJobArguments, match="scheme must be http or https"):
        policy.check_url("source_url", "ftp://blog.example.com")
    # Refused on the address, before any connection is attempted.
    with pytest.raises(
        InvalidJobArguments, match=r"10.1.2.3 is a private address \(allow it with CLONE_ALLOWED_NETWORKS\)"
    ):
        policy.check_url("target_url", "http://10.1.2.3/")
    with pytest.raises(InvalidJobArguments, match=r"localhost resolves to .* loopback address"):
        policy.check_url("target_url", "http://localhost:8080")
    for address in ("169.254.169.254", "::ffff:127.0.0.1", "fe80::1", "100.64.0.1", "0.0.0.0"):
        with pytest.raises(AddressRefused):
            policy.check_peer("h", address)
    policy.check_peer("h", "93.184.216.34")  # public: allowed
    allowed = HostPolicy(
        allowed_hosts=("10.1.2.3",), allowed_networks=(__import__("ipaddress").ip_network("10.0.0.0/8"),)
    )
    assert allowed.address_refusal(__import__("ipaddress").ip_address("10.1.2.3")) is None


def test_every_connection_is_checked_at_its_peer_address(wp_sites):
    # The host name is allowed, but the address it connects to is not: as after a DNS rebinding.
    policy = HostPolicy(allowed_hosts=("127.0.0.1",), allowed_networks=())
    session = guarded_session(policy, user_agent="tests", verify=True)
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1 is a loopback address"):
        session.get(f"{wp_sites.source.url}/wp-json/", timeout=5)
    settings = CloneSettings.from_env({"CLONE_ALLOWED_HOSTS": "127.0.0.1"})
    client = WordPressClient(
        role="source",
        site_url=wp_sites.source.url,
        settings=settings,
        policy=policy,
        session=session,
        credentials=None,
    )
    with pytest.raises(InvalidJobArguments, match=r"refused: connection to 127\.0\.0\.1 reached"):
        client.discover()


@pytest.fixture
def redirecting_server():
    """A plain HTTP server that redirects every request to a private address."""

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://10.1.2.3/wp-json/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_redirect_is_checked_like_the_url_itself(wp_sites, redirecting_server):
    settings = CloneSettings.from_env(clone_env(wp_sites, CLONE_ALLOWED_HOSTS="127.0.0.1,10.1.2.3"))
    policy = HostPolicy(allowed_hosts=settings.allowed_hosts, allowed_networks=settings.allowed_networks)
    client = WordPressClient(
        role="source",
        site_url=f"http://127.0.0.1:{redirecting_server}",
        settings=settings,
        policy=policy,
        session=guarded_session(policy, user_agent="tests", verify=True),
        credentials=None,
    )
    with pytest.raises(
        InvalidJobArguments, match=r"source redirect: refused: 10.1.2.3 resolves to 10.1.2.3 is a private"
    ):
        client.get_json("/wp/v2/posts")
