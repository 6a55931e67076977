"""The clone job's argument contract: what the API may send, and what is refused permanently."""

from __future__ import annotations

import pytest

from worker_app.errors import InvalidJobArguments
from worker_app.wordpress.clone_args import CONTENT_TYPES, CloneOptions, parse_clone_options, validate_site_url


def test_defaults_copy_everything_safely():
    assert parse_clone_options(None) == CloneOptions()
    assert parse_clone_options({}) == CloneOptions()
    assert CloneOptions().content_types == CONTENT_TYPES
    assert CloneOptions().conflict == "skip"
    assert CloneOptions().dry_run is False


def test_options_are_normalised():
    options = parse_clone_options(
        {"content_types": ["posts", "categories"], "conflict": "overwrite", "dry_run": True, "max_items": 5}
    )
    assert options.content_types == ("categories", "posts")
    assert (options.conflict, options.dry_run, options.max_items) == ("overwrite", True, 5)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ([], "options: expected an object"),
        ({"dryrun": True}, "unknown key(s) dryrun"),
        ({"content_types": []}, "options.content_types"),
        ({"content_types": ["themes"]}, "unknown type 'themes'"),
        ({"conflict": "merge"}, "options.conflict"),
        ({"dry_run": "yes"}, "options.dry_run"),
        ({"max_items": 0}, "options.max_items"),
        ({"max_items": True}, "options.max_items"),
        ({"max_media_bytes": 1.5}, "options.max_media_bytes"),
    ],
)
def test_bad_options_say_what_is_wrong(options, fragment):
    with pytest.raises(InvalidJobArguments) as raised:
        parse_clone_options(options)
    assert fragment in str(raised.value)


def test_urls_are_normalised():
    assert validate_site_url("source_url", "https://Example.com/blog/") == "https://example.com/blog"
    assert validate_site_url("source_url", "http://10.0.0.5:8080") == "http://10.0.0.5:8080"
    assert validate_site_url("source_url", "http://[::1]:8080/") == "http://[::1]:8080"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (42, "expected a URL string"),
        ("ftp://example.com", "scheme must be http or https, got ftp"),
        ("example.com", "scheme must be http or https, got none"),
        ("https://", "no host"),
        ("https://admin:pw@example.com", "must not contain credentials"),
        ("https://example.com/?p=1", "query or fragment"),
        ("https://example.com:99999", "not a valid URL"),
        ("https://exa mple.com", "white space"),
        ("https://example.com/" + "a" * 3000, "longer than"),
    ],
)
def test_bad_urls_are_refused(value, fragment):
    with pytest.raises(InvalidJobArguments) as raised:
        validate_site_url("source_url", value)
    assert fragment in str(raised.value)
    assert str(raised.value).startswith("source_url: ")
    assert "pw@" not in str(raised.value)
