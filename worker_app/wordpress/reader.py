"""The read phase: who we are on each site, what the source holds, what the target already has.

The target is matched by slug (batched `?slug=a,b,...` queries), which is what makes a second run,
or a retried message, find what an earlier one wrote instead of duplicating it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidJobArguments
from .client import WordPressClient
from .clone_args import CloneOptions

ROUTES: dict[str, str] = {
    "categories": "/wp/v2/categories",
    "tags": "/wp/v2/tags",
    "media": "/wp/v2/media",
    "pages": "/wp/v2/pages",
    "posts": "/wp/v2/posts",
}
# Every status an editor can read; trash and auto-drafts are left behind on purpose.
_POST_STATUSES = "publish,future,draft,pending,private"
_SLUG_BATCH = 50

# Capabilities the target user needs for each content type written.
_TARGET_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "categories": ("manage_categories",),
    "tags": ("manage_categories",),
    "media": ("upload_files",),
    "pages": ("edit_pages", "publish_pages", "edit_published_pages"),
    "posts": ("edit_posts", "publish_posts", "edit_published_posts"),
}
# With these, the source's drafts, private items and raw (unrendered) content are readable.
_SOURCE_EDIT_CAPABILITIES = ("edit_others_posts", "edit_others_pages", "read_private_posts", "read_private_pages")


@dataclass
class SourceContent:
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    #: True when read with `context=edit`: raw fields and every status are available.
    edit_context: bool = False
    #: Source user id -> display name (only read when mapping authors).
    authors: dict[int, str] = field(default_factory=dict)


@dataclass
class TargetIndex:
    by_slug: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: Display name -> user id on the target (only read when mapping authors).
    users: dict[str, int] = field(default_factory=dict)

    def get(self, content_type: str, slug: str) -> dict[str, Any] | None:
        return self.by_slug.get(content_type, {}).get(slug)


def types_to_read(options: CloneOptions) -> tuple[str, ...]:
    """What the source must be read for: the chosen types, plus what posts and pages refer to."""
    wanted = set(options.content_types)
    if "posts" in wanted:
        wanted |= {"categories", "tags"}  # term assignments
    if wanted & {"posts", "pages"}:
        wanted.add("media")  # featured images and media URLs in content
    return tuple(kind for kind in ROUTES if kind in wanted)


def check_target_user(target: WordPressClient, options: CloneOptions) -> dict[str, Any]:
    me = _me(target)
    capabilities = me.get("capabilities") or {}
    needed: list[str] = []
    for kind in options.content_types:
        needed.extend(cap for cap in _TARGET_CAPABILITIES[kind] if cap not in needed)
    if options.map_authors:
        # Assigning other users' authorship, and listing users to find them by name.
        needed.extend(cap for cap in ("edit_others_posts", "edit_others_pages", "list_users") if cap not in needed)
    missing = [cap for cap in needed if not capabilities.get(cap)]
    if missing:
        raise InvalidJobArguments(
            f"target {target.site_url}: the configured user lacks the capabilities {', '.join(missing)}"
        )
    return me


def source_edit_context(source: WordPressClient) -> bool:
    if not source.authenticated:
        return False
    capabilities = _me(source).get("capabilities") or {}
    return all(capabilities.get(cap) for cap in _SOURCE_EDIT_CAPABILITIES)


def _me(client: WordPressClient) -> dict[str, Any]:
    # Also the credentials check: WordPress answers anonymous reads even when a wrong password was
    # sent, so without this a bad source password would silently copy only public content.
    me = client.get_json("/wp/v2/users/me", {"context": "edit"})
    if not isinstance(me, dict):
        raise InvalidJobArguments(f"{client.role} {client.site_url}: /wp/v2/users/me did not return a user")
    return me


def read_source(source: WordPressClient, options: CloneOptions, *, edit_context: bool) -> SourceContent:
    content = SourceContent(edit_context=edit_context)
    context = "edit" if edit_context else "view"
    for kind in types_to_read(options):
        params: dict[str, str | int] = {"context": context, "orderby": "id", "order": "asc"}
        if kind in ("categories", "tags"):
            params["context"] = "view"  # name, slug, description and parent are all there
            params["hide_empty"] = "false"
        elif kind == "media" and edit_context:
            params["status"] = "inherit,private"
        elif kind in ("pages", "posts") and edit_context:
            params["status"] = _POST_STATUSES
        listing = source.list_all(ROUTES[kind], params, limit=options.max_items)
        content.items[kind] = listing.items
        content.totals[kind] = listing.total
    if options.map_authors:
        ids = {
            int(item["author"])
            for kind in ("pages", "posts")
            for item in content.items.get(kind, [])
            if isinstance(item.get("author"), int)
        }
        for user in _by_ids(source, "/wp/v2/users", sorted(ids)):
            content.authors[int(user["id"])] = str(user.get("name", ""))
    return content


def index_target(target: WordPressClient, source: SourceContent, *, users: bool) -> TargetIndex:
    index = TargetIndex()
    for kind, items in source.items.items():
        slugs = sorted({str(item["slug"]) for item in items if item.get("slug")})
        params: dict[str, str | int] = {"context": "edit"}
        if kind in ("pages", "posts"):
            params["status"] = "any"
        elif kind == "media":
            params["status"] = "inherit,private"
        else:
            params["hide_empty"] = "false"
        found: dict[str, dict[str, Any]] = {}
        for batch in _batches(slugs, _SLUG_BATCH):
            listing = target.list_all(ROUTES[kind], {**params, "slug": ",".join(batch)}, limit=len(batch) * 2)
            for item in listing.items:
                found.setdefault(str(item.get("slug")), item)
        index.by_slug[kind] = found
    if users:
        for user in target.list_all("/wp/v2/users", {"context": "edit"}, limit=10_000).items:
            index.users.setdefault(str(user.get("name", "")), int(user["id"]))
    return index


def _by_ids(client: WordPressClient, route: str, ids: list[int]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for batch in _batches([str(i) for i in ids], _SLUG_BATCH):
        found.extend(client.list_all(route, {"include": ",".join(batch)}, limit=len(batch)).items)
    return found


def _batches(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
