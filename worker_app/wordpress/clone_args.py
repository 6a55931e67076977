"""Validation of `clone_wordpress` arguments: the job's public contract.

Arguments arrive from the API as JSON, so everything is checked here, once, before any work starts
(`parse_clone_request`); a problem raises `InvalidJobArguments`, which dead-letters the message
without retries. Where the URLs may connect to is the operator's policy, checked by `run_clone`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import urlsplit, urlunsplit

from ..errors import InvalidJobArguments

#: Content the clone can copy, in the order it is written to the target.
CONTENT_TYPES: tuple[str, ...] = ("categories", "tags", "media", "pages", "posts")
CONFLICT_POLICIES: tuple[str, ...] = ("skip", "overwrite")

DEFAULT_MAX_ITEMS = 10_000
DEFAULT_MAX_MEDIA_BYTES = 50 * 1024 * 1024
MAX_URL_LENGTH = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class CloneOptions:
    """The documented `options` argument of `clone_wordpress`; every field is optional in the JSON.

    - `content_types`: which of CONTENT_TYPES to copy (default: all).
    - `conflict`: what to do when the target already has an item with the same slug:
      `skip` (default) keeps the target's, `overwrite` updates it. Either way nothing is duplicated.
    - `dry_run`: read everything and report what would change, write nothing (default false).
    - `max_items`: upper bound on items read per content type (default 10000).
    - `max_media_bytes`: largest media file copied, in bytes (default 50 MiB); larger ones are skipped.
    - `map_authors`: match authors by display name on the target (default false: the target's
      application-password user becomes the author).
    """

    content_types: tuple[str, ...] = CONTENT_TYPES
    conflict: Literal["skip", "overwrite"] = "skip"
    dry_run: bool = False
    max_items: int = DEFAULT_MAX_ITEMS
    max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES
    map_authors: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CloneRequest:
    """A validated clone: what `run_clone` takes.

    :param source_url: the site to read, normalised (`validate_site_url`).
    :param target_url: the site to write, normalised, not the same site as the source.
    :param options: the parsed options.

    Example::

        request = parse_clone_request("https://blog.example.com", "https://new.example.org", {"dry_run": True})
        run_clone(request, settings.clone)
    """

    source_url: str
    target_url: str
    options: CloneOptions


def parse_clone_request(source_url: object, target_url: object, options: object) -> CloneRequest:
    """Validate the job's three arguments (in this order), the only validation a clone's input gets."""
    source = validate_site_url("source_url", source_url)
    target = validate_site_url("target_url", target_url)
    if source.lower() == target.lower():
        raise InvalidJobArguments("target_url: must be a different site from source_url")
    return CloneRequest(source_url=source, target_url=target, options=parse_clone_options(options))


def parse_clone_options(raw: object) -> CloneOptions:
    """Validate the JSON `options` object (None means all defaults)."""
    if raw is None:
        return CloneOptions()
    if not isinstance(raw, Mapping):
        raise InvalidJobArguments(f"options: expected an object, got {type(raw).__name__}")
    known = {"content_types", "conflict", "dry_run", "max_items", "max_media_bytes", "map_authors"}
    unknown = sorted(str(key) for key in raw if key not in known)
    if unknown:
        raise InvalidJobArguments(f"options: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    defaults = CloneOptions()
    return CloneOptions(
        content_types=_content_types(raw.get("content_types", defaults.content_types)),
        conflict=_choice("options.conflict", raw.get("conflict", defaults.conflict), CONFLICT_POLICIES),
        dry_run=_boolean("options.dry_run", raw.get("dry_run", defaults.dry_run)),
        max_items=_positive_int("options.max_items", raw.get("max_items", defaults.max_items)),
        max_media_bytes=_positive_int("options.max_media_bytes", raw.get("max_media_bytes", defaults.max_media_bytes)),
        map_authors=_boolean("options.map_authors", raw.get("map_authors", defaults.map_authors)),
    )


def validate_site_url(field: str, value: object) -> str:
    """An absolute http(s) URL of a WordPress site, normalised without a trailing slash.

    Credentials in the URL are refused: they would travel in the message and land in logs.
    """
    if not isinstance(value, str):
        raise InvalidJobArguments(f"{field}: expected a URL string, got {type(value).__name__}")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidJobArguments(f"{field}: URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() for ch in value):
        raise InvalidJobArguments(f"{field}: URL contains white space")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        raise InvalidJobArguments(f"{field}: not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        shown = parts.scheme or "none"
        raise InvalidJobArguments(f"{field}: scheme must be http or https, got {shown}")
    if not parts.hostname:
        raise InvalidJobArguments(f"{field}: URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidJobArguments(f"{field}: URL must not contain credentials; configure them on the worker instead")
    if parts.query or parts.fragment:
        raise InvalidJobArguments(f"{field}: URL must not have a query or fragment")
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # IPv6 literal
        netloc = f"[{parts.hostname}]" if port is None else f"[{parts.hostname}]:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _content_types(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise InvalidJobArguments("options.content_types: expected a non-empty list")
    chosen = set()
    for item in value:
        if item not in CONTENT_TYPES:
            raise InvalidJobArguments(
                f"options.content_types: unknown type {item!r}; allowed: {', '.join(CONTENT_TYPES)}"
            )
        chosen.add(item)
    return tuple(kind for kind in CONTENT_TYPES if kind in chosen)


def _choice(field: str, value: object, choices: tuple[str, ...]) -> Literal["skip", "overwrite"]:
    if value not in choices:
        raise InvalidJobArguments(f"{field}: expected one of {', '.join(choices)}, got {value!r}")
    return cast(Literal["skip", "overwrite"], value)


def _boolean(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidJobArguments(f"{field}: expected true or false, got {value!r}")
    return value


def _positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidJobArguments(f"{field}: expected a whole number >= 1, got {value!r}")
    return value
