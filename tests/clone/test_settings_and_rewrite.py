"""CloneSettings.from_env, credentials lookup and redaction, and the link rewriter (pure functions)."""

from __future__ import annotations

import ipaddress

import pytest

from worker_app.config.envparse import ConfigError
from worker_app.errors import InvalidJobArguments
from worker_app.wordpress import CloneSettings
from worker_app.wordpress.rewrite import LinkRewriter, media_url_map


def test_defaults_refuse_every_host_and_have_no_credentials():
    settings = CloneSettings.from_env({})
    assert settings.allowed_hosts == ()
    assert settings.allowed_networks == ()
    assert (settings.connect_timeout, settings.read_timeout, settings.retries) == (10.0, 30.0, 3)
    assert settings.credentials.lookup("blog.example.com", None) is None


def test_every_variable_is_read():
    settings = CloneSettings.from_env(
        {
            "CLONE_ALLOWED_HOSTS": "Blog.Example.com, *.example.org,127.0.0.1",
            "CLONE_ALLOWED_NETWORKS": "10.0.0.0/8,::1",
            "CLONE_HTTP_CONNECT_TIMEOUT": "2",
            "CLONE_HTTP_TIMEOUT": "3.5",
            "CLONE_HTTP_RETRIES": "0",
            "CLONE_HTTP_BACKOFF": "0.5",
            "CLONE_HTTP_MAX_BACKOFF": "9",
            "CLONE_MAX_RESPONSE_BYTES": "2048",
            "CLONE_MAX_MEDIA_BYTES": "1000",
            "CLONE_PER_PAGE": "10",
            "CLONE_TLS_VERIFY": "false",
            "CLONE_USER_AGENT": "tests",
            "WORDPRESS_AUTH_BLOG_EXAMPLE_COM": "editor:abcd efgh ijkl",
        }
    )
    assert settings.allowed_hosts == ("blog.example.com", "*.example.org", "127.0.0.1")
    assert settings.allowed_networks == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert (settings.connect_timeout, settings.read_timeout, settings.retries) == (2.0, 3.5, 0)
    assert (settings.backoff_seconds, settings.max_backoff_seconds) == (0.5, 9.0)
    assert (settings.max_response_bytes, settings.max_media_bytes, settings.per_page) == (2048, 1000, 10)
    assert settings.tls_verify is False
    assert settings.user_agent == "tests"
    found = settings.credentials.lookup("blog.example.com", None)
    assert found is not None
    assert found.basic_auth() == ("editor", "abcd efgh ijkl")


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("CLONE_ALLOWED_HOSTS", "https://blog.example.com", "not a host name"),
        ("CLONE_ALLOWED_HOSTS", "blog.example.com:8080", "not a host name"),
        ("CLONE_ALLOWED_NETWORKS", "10.0.0.0/33", "not an address or CIDR"),
        ("CLONE_HTTP_TIMEOUT", "soon", "expected a number"),
        ("CLONE_HTTP_RETRIES", "-1", "at least 0"),
        ("CLONE_PER_PAGE", "500", "at most 100"),
        ("CLONE_CA_FILE", "/nonexistent/ca.pem", "does not exist"),
        ("CLONE_CREDENTIALS_DIR", "/nonexistent/secret", "not a directory"),
        ("WORDPRESS_AUTH_BLOG_EXAMPLE_COM", "no-colon-secret", "username:application password"),
    ],
)
def test_bad_values_name_the_variable_and_never_echo_a_secret(variable, value, problem):
    with pytest.raises(ConfigError) as caught:
        CloneSettings.from_env({variable: value})
    assert caught.value.variable == variable
    assert problem in str(caught.value)
    if variable.startswith("WORDPRESS_AUTH_"):
        assert value not in str(caught.value)


def test_credentials_never_show_in_repr():
    settings = CloneSettings.from_env({"WORDPRESS_AUTH_EXAMPLE_COM": "admin:sup3r s3cret"})
    credentials = settings.credentials.lookup("example.com", None)
    for text in (repr(settings), str(settings), repr(credentials), repr(settings.credentials)):
        assert "sup3r" not in text


def test_credentials_by_host_and_port_first_then_host(tmp_path):
    (tmp_path / "example.com_8443").write_text("port-user:pw1\n")
    (tmp_path / "example.com").write_text("host-user:pw2\n")
    (tmp_path / "broken.example.com").write_text("nothing here")
    settings = CloneSettings.from_env(
        {"CLONE_CREDENTIALS_DIR": str(tmp_path), "WORDPRESS_AUTH_OTHER_EXAMPLE_COM": "env-user:pw3"}
    )
    store = settings.credentials
    assert store.lookup("example.com", 8443).username == "port-user"
    assert store.lookup("example.com", 9000).username == "host-user"
    assert store.lookup("EXAMPLE.com", None).username == "host-user"
    assert store.lookup("other.example.com", None).username == "env-user"
    assert store.lookup("missing.example.com", None) is None
    # Files are read at each lookup: a rotated Secret applies without a restart.
    (tmp_path / "example.com").write_text("rotated:pw4")
    assert store.lookup("example.com", None).username == "rotated"
    with pytest.raises(InvalidJobArguments, match=r"broken\.example\.com") as caught:
        store.lookup("broken.example.com", None)
    assert "nothing here" not in str(caught.value)


SOURCE = "https://old.example.com"
TARGET = "https://new.example.org"


def test_site_links_change_origin_in_every_spelling_and_keep_their_path():
    rewriter = LinkRewriter(source_url=SOURCE, target_url=TARGET)
    text = (
        '<a href="https://old.example.com/about/">a</a> <a href="http://old.example.com/?p=3">b</a> '
        "<a href='//old.example.com'>c</a> https://old.example.com, https://old.example.com.evil.net/ "
        "https://old.example.community/"
    )
    rewritten, count = rewriter.rewrite(text)
    assert count == 4
    assert rewritten == (
        '<a href="https://new.example.org/about/">a</a> <a href="https://new.example.org/?p=3">b</a> '
        "<a href='https://new.example.org'>c</a> https://new.example.org, https://old.example.com.evil.net/ "
        "https://old.example.community/"
    )


def test_media_urls_and_ids_map_to_the_uploaded_ones_and_unknown_uploads_stay_on_the_source():
    source_item = {
        "id": 7,
        "source_url": f"{SOURCE}/wp-content/uploads/2023/05/pic.png",
        "media_details": {
            "sizes": {
                "medium": {"source_url": f"{SOURCE}/wp-content/uploads/2023/05/pic-300x200.png"},
                "huge": {"source_url": f"{SOURCE}/wp-content/uploads/2023/05/pic-2000x1000.png"},
            }
        },
    }
    target_item = {
        "id": 42,
        "source_url": f"{TARGET}/wp-content/uploads/2026/11/pic.png",
        "media_details": {"sizes": {"medium": {"source_url": f"{TARGET}/wp-content/uploads/2026/11/pic-300x200.png"}}},
    }
    mapping = media_url_map(source_item, target_item)
    assert mapping[f"{SOURCE}/wp-content/uploads/2023/05/pic-2000x1000.png"] == target_item["source_url"]
    rewriter = LinkRewriter(source_url=SOURCE, target_url=TARGET)
    rewriter.add_media(mapping, 7, 42)
    text = (
        '<!-- wp:image {"id":7,"sizeSlug":"medium"} --><img src="//old.example.com/wp-content/uploads/2023/05/'
        'pic-300x200.png" class="wp-image-7"/> [gallery ids="7, 8"] '
        '<img src="https://old.example.com/wp-content/uploads/2020/01/other.png">'
    )
    rewritten, count = rewriter.rewrite(text)
    assert rewritten == (
        '<!-- wp:image {"id":42,"sizeSlug":"medium"} --><img src="https://new.example.org/wp-content/uploads/2026/'
        '11/pic-300x200.png" class="wp-image-42"/> [gallery ids="42,8"] '
        '<img src="https://old.example.com/wp-content/uploads/2020/01/other.png">'
    )
    assert count == 4
