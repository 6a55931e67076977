"""Rewriting of copied HTML: media URLs to the uploaded files, source-site links to the target site,
and attachment ids in image classes, block attributes and gallery shortcodes to the target's ids.

Media URLs are replaced first and exactly (uploads land in the target's current year/month folder,
so their paths change); every remaining link to the source site then keeps its path and only
changes its origin, which is right because slugs are kept. Links into the source's uploads that
were not replaced (media not copied) are left pointing at the source, where the files are. Links written without a scheme
(`//host/path`) and with the other scheme (`http` vs `https`) count as links to the source too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# A site URL ends where a path, query, fragment, quote, tag, space, punctuation or the text does
# (not at a dot or colon: old.example.com.evil.net and old.example.com:8080 are other sites).
_BOUNDARY = r"(?=[/?#\"'<>\s)\],;&]|$)"
_IMAGE_CLASS = re.compile(r"\bwp-image-(\d+)\b")
_BLOCK_ID = re.compile(r"(<!--\s+wp:(?:image|cover|video|audio|file|media-text)\s+\{[^}]*?\"(?:id|mediaId)\":)(\d+)")
_GALLERY = re.compile(r"(\[gallery\b[^\]]*?\bids=[\"']?)([\d,\s]+)")


@dataclass(kw_only=True)
class LinkRewriter:
    """Rewrites links to the source site in content to the target, and copied media to their new URLs and ids.

    :param source_url: the source site's URL.
    :param target_url: the target site's URL.
    :param media_urls: source media URL -> target URL (filled with `add_media`).
    :param media_ids: source attachment id -> target attachment id (filled with `add_media`).

    Example::

        rewriter = LinkRewriter(source_url="https://old.example.com", target_url="https://new.example.com")
        rewriter.add_media({"https://old.example.com/a.jpg": "https://new.example.com/a.jpg"}, 7, 12)
    """

    source_url: str
    target_url: str
    #: Source media URL (the original and each generated size) -> the target's URL.
    media_urls: dict[str, str] = field(default_factory=dict)
    #: Source attachment id -> target attachment id.
    media_ids: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._site = _site_pattern(self.source_url)
        self._media: re.Pattern[str] | None = None

    def add_media(self, urls: Mapping[str, str], source_id: int, target_id: int) -> None:
        self.media_urls.update(urls)
        self.media_ids[source_id] = target_id
        self._media = None

    def rewrite(self, text: str) -> tuple[str, int]:
        """The rewritten text and how many URLs or ids were changed."""
        if not text:
            return text, 0
        count = 0
        media = self._media_pattern()
        if media is not None:
            by_key = {_key(url): target for url, target in self.media_urls.items()}
            text, n = media.subn(lambda m: by_key[_key(m.group(0))], text)
            count += n
        text, n = self._site.subn(self.target_url, text)
        count += n
        if self.media_ids:
            # Counted as matches: an id that maps to itself (rare) is counted too, harmlessly.
            text, n = _IMAGE_CLASS.subn(lambda m: f"wp-image-{self._media_id(m.group(1))}", text)
            count += n
            text, n = _BLOCK_ID.subn(lambda m: m.group(1) + self._media_id(m.group(2)), text)
            count += n
            text, n = _GALLERY.subn(
                lambda m: m.group(1) + ",".join(self._media_id(i.strip()) for i in m.group(2).split(",")),
                text,
            )
            count += n
        return text, count

    def _media_id(self, source_id: str) -> str:
        try:
            return str(self.media_ids.get(int(source_id), int(source_id)))
        except ValueError:
            return source_id

    def _media_pattern(self) -> re.Pattern[str] | None:
        if self._media is None and self.media_urls:
            # Longest first, so a size variant (harbor-300x188.png) is not cut by the original's URL.
            alternatives = sorted(self.media_urls, key=len, reverse=True)
            # Case-sensitive: paths on the web server are.
            self._media = re.compile("(?:" + "|".join(_any_scheme(url) for url in alternatives) + ")" + _BOUNDARY)
        return self._media


def _site_pattern(site_url: str) -> re.Pattern[str]:
    # Uploads not replaced by then are media that were not copied (not chosen, too large, failed):
    # they keep pointing at the source, where they exist, rather than at a target path that does not.
    return re.compile(_any_scheme(site_url) + _BOUNDARY + "(?!/wp-content/uploads/)", re.IGNORECASE)


def _any_scheme(url: str) -> str:
    """A regex for `url` written with http, https or no scheme at all."""
    parts = urlsplit(url)
    rest = url[len(parts.scheme) + 3 :]  # after "scheme://"
    return r"(?:https?:)?//" + re.escape(rest)


def _key(url: str) -> str:
    """A media URL without its scheme: `http://h/p`, `https://h/p` and `//h/p` are the same file."""
    return url.split("//", 1)[1] if "//" in url else url


def media_url_map(source_item: Mapping[str, object], target_item: Mapping[str, object]) -> dict[str, str]:
    """Source URL -> target URL for the original file and every size both sites generated."""
    mapping: dict[str, str] = {}
    source_full = source_item.get("source_url")
    target_full = target_item.get("source_url")
    if not isinstance(source_full, str) or not isinstance(target_full, str):
        return mapping
    mapping[source_full] = target_full
    target_sizes = _sizes(target_item)
    for name, url in _sizes(source_item).items():
        # A size the target did not generate (other image settings) falls back to the original.
        mapping[url] = target_sizes.get(name, target_full)
    return mapping


def _sizes(item: Mapping[str, object]) -> dict[str, str]:
    details = item.get("media_details")
    if not isinstance(details, dict):
        return {}
    sizes = details.get("sizes")
    if not isinstance(sizes, dict):
        return {}
    found = {}
    for name, size in sizes.items():
        if isinstance(size, dict) and isinstance(size.get("source_url"), str):
            found[str(name)] = size["source_url"]
    return found
