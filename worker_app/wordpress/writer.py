"""The write phases: terms, media, rewrite, pages, posts and attachment of media to their parents.

Each item is matched on the target by slug: a match is skipped (`conflict: skip`) or brought in
line field by field (`conflict: overwrite`, and only the fields that differ are sent, so an
overwrite of an identical item changes nothing). Without a match the item is created. Ids of the
source are translated to the target's as items are matched or created, which is why the phases run
in dependency order: terms and media before the pages and posts that refer to them, parent pages
before their children.

A 4xx on one item is recorded against that item and the clone goes on; anything that says the job
itself cannot succeed (credentials, refused address) or may succeed later (timeouts, 5xx) is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .client import WordPressAPIError, WordPressClient
from .clone_args import CloneOptions
from .reader import ROUTES, SourceContent, TargetIndex
from .rewrite import LinkRewriter, media_url_map
from .summary import Summary

_MAX_QUERY_TEXT = 1500  # media text fields longer than this go in a follow-up request, not the URL


class Cloner:
    """The write phases of a clone: terms, media, rewritten pages and posts, media attached.

    Items are matched by slug on the target, so a second run (or a retried message) duplicates
    nothing; what happened to each item goes into `summary`.

    :param source: the source site's client.
    :param target: the target site's client.
    :param options: the job's options (conflict policy, dry run, content types).
    :param content: what was read from the source.
    :param index: what the target already has, by slug.
    :param summary: where results are counted.
    :param rewriter: rewrites links and media references.
    :param media_limit: largest media file copied, in bytes.

    Example::

        cloner = Cloner(source=source, target=target, options=options, content=content, index=index,
                        summary=summary, rewriter=rewriter, media_limit=options.max_media_bytes)
        cloner.terms("categories")
        cloner.media()
        cloner.posts("posts")
    """

    def __init__(
        self,
        *,
        source: WordPressClient,
        target: WordPressClient,
        options: CloneOptions,
        content: SourceContent,
        index: TargetIndex,
        summary: Summary,
        rewriter: LinkRewriter,
        media_limit: int,
    ) -> None:
        self.source = source
        self.target = target
        self.options = options
        self.content = content
        self.index = index
        self.summary = summary
        self.rewriter = rewriter
        self.media_limit = media_limit
        self.dry_run = options.dry_run
        self.term_ids: dict[str, dict[int, int]] = {"categories": {}, "tags": {}}
        self.media_ids: dict[int, int] = {}
        #: Parent post of each target attachment, as known on the target.
        self.media_parents: dict[int, int] = {}
        #: Source page/post id -> target id (one id space on both sides: they share wp_posts).
        self.content_ids: dict[int, int] = {}
        self.rewritten: dict[int, dict[str, str]] = {}
        self.rewrite_counts: dict[int, int] = {}

    # -- terms ---------------------------------------------------------------------------------

    def terms(self, taxonomy: str) -> None:
        ids = self.term_ids[taxonomy]
        items = self.content.items.get(taxonomy, [])
        for item in _parents_first(items) if taxonomy == "categories" else items:
            slug = str(item.get("slug") or "")
            desired: dict[str, Any] = {
                "name": str(item.get("name", slug)),
                "slug": slug,
                "description": str(item.get("description") or ""),
            }
            if taxonomy == "categories":
                desired["parent"] = ids.get(_int(item.get("parent")), 0)
            existing = self.index.get(taxonomy, slug)
            if existing is not None:
                ids[_int(item["id"])] = _int(existing["id"])
                self._update(taxonomy, slug, desired, existing)
                continue
            if self.dry_run:
                self.summary.record(taxonomy, "copied", slug, action="create")
                continue
            try:
                created = self.target.post_json(ROUTES[taxonomy], desired)
            except WordPressAPIError as error:
                if error.code == "term_exists" and isinstance(error.data.get("term_id"), int):
                    # Same name under the same parent but another slug: WordPress will not have two.
                    ids[_int(item["id"])] = int(error.data["term_id"])
                    self.summary.record(taxonomy, "skipped", slug, reason="a term with this name exists")
                else:
                    self.summary.fail(taxonomy, slug, error)
                continue
            ids[_int(item["id"])] = _int(created["id"])
            self.summary.record(taxonomy, "copied", slug, action="create")

    def map_existing_terms(self, taxonomy: str) -> None:
        """For posts copied without their taxonomy: assign the target's terms of the same slug."""
        for item in self.content.items.get(taxonomy, []):
            existing = self.index.get(taxonomy, str(item.get("slug") or ""))
            if existing is not None:
                self.term_ids[taxonomy][_int(item["id"])] = _int(existing["id"])

    # -- media ---------------------------------------------------------------------------------

    def media(self) -> None:
        for item in self.content.items.get("media", []):
            slug = str(item.get("slug") or "")
            existing = self.index.get("media", slug)
            desired = self._media_fields(item)
            if existing is not None:
                self._map_media(item, existing)
                self._update("media", slug, desired, existing)
                continue
            size = _filesize(item)
            if size is not None and size > self.media_limit:
                self.summary.record("media", "skipped", slug, reason=f"larger than {self.media_limit} bytes")
                continue
            if self.dry_run:
                self.summary.record("media", "copied", slug, action="create")
                continue
            try:
                created = self._upload(item, slug, desired)
            except WordPressAPIError as error:
                self.summary.fail("media", slug, error)
                continue
            if created is None:
                self.summary.record("media", "skipped", slug, reason=f"larger than {self.media_limit} bytes")
                continue
            self._map_media(item, created)
            self.summary.record("media", "copied", slug, action="create")

    def map_existing_media(self) -> None:
        for item in self.content.items.get("media", []):
            existing = self.index.get("media", str(item.get("slug") or ""))
            if existing is not None:
                self._map_media(item, existing)

    def _media_fields(self, item: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "title": _text(item, "title"),
            "caption": _text(item, "caption"),
            "alt_text": str(item.get("alt_text") or ""),
        }
        # Without edit context the description is only available rendered, image markup included.
        description = item.get("description")
        if isinstance(description, dict) and isinstance(description.get("raw"), str):
            fields["description"] = description["raw"]
        return fields

    def _upload(self, item: dict[str, Any], slug: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        url = str(item.get("source_url") or "")
        downloaded = self.source.download(url, self.media_limit)
        if downloaded is None:
            return None
        body, content_type = downloaded
        if content_type in ("", "application/octet-stream") and isinstance(item.get("mime_type"), str):
            content_type = item["mime_type"]
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or slug
        params: dict[str, str | int] = {"slug": slug}
        later: dict[str, Any] = {}
        for key, value in fields.items():
            if not value:
                continue
            if len(value) <= _MAX_QUERY_TEXT:
                params[key] = value
            else:
                later[key] = value
        created = self.target.post_json(
            ROUTES["media"],
            params=params,
            data=body,
            headers={"Content-Type": content_type, "Content-Disposition": _disposition(filename)},
        )
        if later:
            created = self.target.post_json(f"{ROUTES['media']}/{_int(created['id'])}", later)
        return created

    def _map_media(self, item: dict[str, Any], target_item: dict[str, Any]) -> None:
        source_id, target_id = _int(item["id"]), _int(target_item["id"])
        self.media_ids[source_id] = target_id
        self.media_parents[target_id] = _int(target_item.get("post"))
        self.rewriter.add_media(media_url_map(item, target_item), source_id, target_id)

    # -- rewrite -------------------------------------------------------------------------------

    def rewrite(self, kinds: Iterable[str]) -> None:
        """Rewritten content and excerpt of every page and post, before any of them is written."""
        for kind in kinds:
            for item in self.content.items.get(kind, []):
                fields = {}
                count = 0
                for name in ("content", "excerpt"):
                    fields[name], changed = self.rewriter.rewrite(_text(item, name))
                    count += changed
                self.rewritten[_int(item["id"])] = fields
                # Counted when the item is written (or would be, in a dry run): a skipped item
                # keeps the target's text, whatever its links.
                self.rewrite_counts[_int(item["id"])] = count

    # -- pages and posts -----------------------------------------------------------------------

    def posts(self, kind: str) -> None:
        items = self.content.items.get(kind, [])
        for item in _parents_first(items) if kind == "pages" else items:
            slug = str(item.get("slug") or item.get("generated_slug") or "")
            if not slug:
                self.summary.fail(kind, f"id {item.get('id')}", ValueError("the item has no slug"))
                continue
            desired = self._post_fields(kind, item, slug)
            existing = self.index.get(kind, slug)
            if existing is not None:
                self.content_ids[_int(item["id"])] = _int(existing["id"])
                if self._update(kind, slug, desired, existing):
                    self.summary.links_rewritten += self.rewrite_counts.get(_int(item["id"]), 0)
                continue
            if self.dry_run:
                self.summary.record(kind, "copied", slug, action="create")
                self.summary.links_rewritten += self.rewrite_counts.get(_int(item["id"]), 0)
                continue
            try:
                created = self.target.post_json(ROUTES[kind], desired)
            except WordPressAPIError as error:
                self.summary.fail(kind, slug, error)
                continue
            self.content_ids[_int(item["id"])] = _int(created["id"])
            self.summary.record(kind, "copied", slug, action="create")
            self.summary.links_rewritten += self.rewrite_counts.get(_int(item["id"]), 0)

    def map_existing_posts(self, kind: str) -> None:
        for item in self.content.items.get(kind, []):
            existing = self.index.get(kind, str(item.get("slug") or ""))
            if existing is not None:
                self.content_ids[_int(item["id"])] = _int(existing["id"])

    def _post_fields(self, kind: str, item: dict[str, Any], slug: str) -> dict[str, Any]:
        rewritten = self.rewritten.get(_int(item["id"]), {})
        fields: dict[str, Any] = {
            "slug": slug,
            "status": str(item.get("status") or "publish"),
            "title": _text(item, "title"),
            "content": rewritten.get("content", _text(item, "content")),
            "excerpt": rewritten.get("excerpt", _text(item, "excerpt")),
            "featured_media": self.media_ids.get(_int(item.get("featured_media")), 0),
        }
        if item.get("date_gmt"):
            fields["date_gmt"] = item["date_gmt"]
        for name in ("comment_status", "ping_status"):
            if isinstance(item.get(name), str):
                fields[name] = item[name]
        if item.get("password"):
            fields["password"] = item["password"]
        if kind == "pages":
            fields["parent"] = self.content_ids.get(_int(item.get("parent")), 0)
            fields["menu_order"] = _int(item.get("menu_order"))
        else:
            categories = _mapped(item.get("categories"), self.term_ids["categories"])
            if categories:
                # None of them on the target: leave it to WordPress (its default category on create,
                # the target's own on overwrite) rather than leave a post with no category at all.
                fields["categories"] = categories
            fields["tags"] = _mapped(item.get("tags"), self.term_ids["tags"])
            fields["sticky"] = bool(item.get("sticky"))
            if isinstance(item.get("format"), str):
                fields["format"] = item["format"]
        if self.options.map_authors:
            author = self.index.users.get(self.content.authors.get(_int(item.get("author")), ""))
            if author is not None:
                fields["author"] = author
        return fields

    # -- attachment of media to their posts ----------------------------------------------------

    def attach(self) -> None:
        """Set each copied attachment's parent post, now that the posts exist on the target."""
        for item in self.content.items.get("media", []):
            target_media = self.media_ids.get(_int(item["id"]))
            parent = self.content_ids.get(_int(item.get("post")))
            if target_media is None or parent is None:
                continue
            current = self.media_parents.get(target_media, 0)
            if current == parent or (current and self.options.conflict == "skip"):
                continue
            if not self.dry_run:
                try:
                    self.target.post_json(f"{ROUTES['media']}/{target_media}", {"post": parent})
                except WordPressAPIError as error:
                    self.summary.note_error("media", str(item.get("slug")), error)
                    continue
                self.media_parents[target_media] = parent
            self.summary.media_attached += 1

    # -- shared --------------------------------------------------------------------------------

    def _update(self, kind: str, slug: str, desired: dict[str, Any], existing: dict[str, Any]) -> bool:
        """An item the target already has: skip it, or send only the fields that differ.

        True when its content or excerpt is (or in a dry run would be) rewritten on the target."""
        if self.options.conflict == "skip":
            self.summary.record(kind, "skipped", slug, reason="exists on the target")
            return False
        changed = [name for name in desired if not _same(name, desired[name], existing.get(name))]
        if not changed:
            self.summary.record(kind, "skipped", slug, reason="identical on the target")
            return False
        if self.dry_run:
            self.summary.record(kind, "updated", slug, action="update", fields=changed)
            return bool({"content", "excerpt"} & set(changed))
        route = ROUTES[kind]
        try:
            self.target.post_json(f"{route}/{_int(existing['id'])}", {name: desired[name] for name in changed})
        except WordPressAPIError as error:
            self.summary.fail(kind, slug, error)
            return False
        self.summary.record(kind, "updated", slug, action="update", fields=changed)
        return bool({"content", "excerpt"} & set(changed))


def _same(name: str, wanted: Any, have: Any) -> bool:
    if isinstance(have, dict):  # title, content, excerpt, caption, description: {raw, rendered}
        have = have.get("raw", have.get("rendered"))
    if name in ("categories", "tags"):
        return sorted(wanted or []) == sorted(have or [])
    if name == "status" and {wanted, have} == {"future", "publish"}:
        return True  # a scheduled post the target already published (or the reverse) is the same post
    return bool(wanted == have)


def _text(item: dict[str, Any], name: str) -> str:
    """A text field: raw (edit context) when there, else rendered (a public read)."""
    value = item.get(name)
    if isinstance(value, dict):
        raw = value.get("raw")
        return str(raw if isinstance(raw, str) else value.get("rendered") or "")
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _mapped(values: Any, mapping: dict[int, int]) -> list[int]:
    if not isinstance(values, list):
        return []
    return [mapping[v] for v in values if isinstance(v, int) and v in mapping]


def _filesize(item: dict[str, Any]) -> int | None:
    details = item.get("media_details")
    size = details.get("filesize") if isinstance(details, dict) else None
    return size if isinstance(size, int) else None


def _parents_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items ordered so each comes after its parent (when the parent is among them)."""
    by_id = {_int(item.get("id")): item for item in items}
    depth: dict[int, int] = {}

    def depth_of(item_id: int, seen: frozenset[int] = frozenset()) -> int:
        if item_id in depth:
            return depth[item_id]
        parent = _int(by_id[item_id].get("parent"))
        # A parent outside the set, or a cycle (a corrupt site), ends the chain.
        result = 0 if parent not in by_id or parent in seen else depth_of(parent, seen | {item_id}) + 1
        depth[item_id] = result
        return result

    key: Callable[[dict[str, Any]], tuple[int, int]] = lambda item: (  # noqa: E731
        depth_of(_int(item.get("id"))),
        _int(item.get("id")),
    )
    return sorted(items, key=key)


def _disposition(filename: str) -> str:
    if filename.isascii() and '"' not in filename and "\\" not in filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=UTF-8''{quote(filename)}"
