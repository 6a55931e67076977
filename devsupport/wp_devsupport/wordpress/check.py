"""Reading the two test sites back, to check what a clone did: through the REST API as the sites'
administrators, in the database, and in the uploads directory."""

from __future__ import annotations

from typing import Any

import requests


def rest(site: Any, route: str, **params: Any) -> Any:
    """GET a collection or item as the site's administrator (context=edit: raw fields, all statuses)."""
    params.setdefault("context", "edit")
    if route.endswith(("/posts", "/pages")):
        params.setdefault("status", "any")
    params.setdefault("per_page", 100)
    response = requests.get(
        f"{site.url}/wp-json{route}",
        params=params,
        auth=(site.username, site.application_password),
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


#: The REST collection of each content type the clone copies.
ROUTES = {
    "categories": "/wp/v2/categories",
    "tags": "/wp/v2/tags",
    "media": "/wp/v2/media",
    "pages": "/wp/v2/pages",
    "posts": "/wp/v2/posts",
}


def content_totals(site: Any) -> dict[str, int]:
    """How many items of each content type the site holds (all statuses), from the REST API's X-WP-Total."""
    totals = {}
    for kind, route in ROUTES.items():
        params: dict[str, Any] = {"context": "edit", "per_page": 1}
        if kind in ("pages", "posts"):
            params["status"] = "any"
        response = requests.get(
            f"{site.url}/wp-json{route}", params=params, auth=(site.username, site.application_password), timeout=30
        )
        response.raise_for_status()
        totals[kind] = int(response.headers["X-WP-Total"])
    return totals


def by_slug(site: Any, route: str) -> dict[str, dict[str, Any]]:
    return {item["slug"]: item for item in rest(site, route)}


def fingerprint(site: Any) -> dict[str, Any]:
    """Everything a clone could change on a site: posts, terms, relationships, post meta, files."""
    return {
        "posts": site.query(
            "SELECT ID, post_type, post_name, post_status, post_parent, post_modified_gmt, "
            "MD5(post_content), MD5(post_excerpt), MD5(post_title) FROM wp_posts ORDER BY ID;"
        ),
        "terms": site.query(
            "SELECT t.term_id, t.slug, t.name, tt.taxonomy, tt.parent, tt.count FROM wp_terms t "
            "JOIN wp_term_taxonomy tt USING (term_id) ORDER BY t.term_id;"
        ),
        "relationships": site.query("SELECT * FROM wp_term_relationships ORDER BY 1, 2;"),
        "postmeta": site.query("SELECT post_id, meta_key, MD5(meta_value) FROM wp_postmeta ORDER BY 1, 2;"),
        "files": sorted(str(path.relative_to(site.uploads)) for path in site.uploads.rglob("*") if path.is_file()),
    }


def source_url_mentions(sites: Any) -> int:
    """Posts, pages and excerpts on the target that still mention the source site."""
    needle = f"127.0.0.1:{sites.source.port}"
    rows = sites.target.query(
        f"SELECT COUNT(*) FROM wp_posts WHERE post_content LIKE '%{needle}%' OR post_excerpt LIKE '%{needle}%';"  # noqa: S608
    )
    return int(rows[0][0])


def assert_cloned(sites: Any) -> None:
    """The target holds the source's seeded content, links rewritten and media uploaded and attached."""
    source, target = sites.source, sites.target

    categories = by_slug(target, "/wp/v2/categories")
    assert set(categories) == {"uncategorized", "news", "releases", "guides"}
    assert categories["releases"]["parent"] == categories["news"]["id"]
    assert categories["news"]["description"] == "Announcements"
    tags = by_slug(target, "/wp/v2/tags")
    assert set(tags) == {"wordpress", "kubernetes", "cloning"}

    media = by_slug(target, "/wp/v2/media")
    source_media = by_slug(source, "/wp/v2/media")
    assert set(media) == {"harbor", "sunrise"}
    pages = by_slug(target, "/wp/v2/pages")
    posts = by_slug(target, "/wp/v2/posts")
    assert set(pages) == {"about", "team"}
    assert set(posts) == {"first-release", "cloning-guide", "upcoming"}

    # Images: the same bytes, uploaded into the target's uploads, with their metadata, attached.
    for slug, parent in (("harbor", pages["about"]["id"]), ("sunrise", posts["first-release"]["id"])):
        copied, original = media[slug], source_media[slug]
        target_file = target.uploads / copied["media_details"]["file"]
        source_file = source.uploads / original["media_details"]["file"]
        assert target_file.read_bytes() == source_file.read_bytes()
        assert copied["source_url"].startswith(f"{target.url}/wp-content/uploads/")
        assert copied["alt_text"] == original["alt_text"]
        assert copied["caption"]["raw"] == original["caption"]["raw"]
        assert copied["title"]["raw"] == original["title"]["raw"]
        assert set(copied["media_details"]["sizes"]) >= {"thumbnail", "medium"}
        assert copied["post"] == parent, f"{slug} is attached to its post"

    # Pages: hierarchy, order, links rewritten to the target, image URL and id the target's.
    source_pages = by_slug(source, "/wp/v2/pages")
    assert pages["about"]["parent"] == 0
    assert pages["team"]["parent"] == pages["about"]["id"]
    assert (pages["about"]["menu_order"], pages["team"]["menu_order"]) == (1, 2)
    for slug in pages:
        assert pages[slug]["title"]["raw"] == source_pages[slug]["title"]["raw"]
        assert pages[slug]["status"] == "publish"
    harbor_medium = media["harbor"]["media_details"]["sizes"]["medium"]["source_url"]
    about = pages["about"]["content"]["raw"]
    assert f'<a href="{target.url}/first-release/">' in about
    assert f'src="{harbor_medium}"' in about
    assert f"wp-image-{media['harbor']['id']}" in about
    assert f'<a href="{target.url}/about/">' in pages["team"]["content"]["raw"]

    # Posts: dates, statuses, terms, featured image, authorship, content and excerpt rewritten.
    source_posts = by_slug(source, "/wp/v2/posts")
    for slug, post in posts.items():
        original = source_posts[slug]
        assert post["status"] == original["status"]
        assert post["title"]["raw"] == original["title"]["raw"]
        if original["date_gmt"]:
            assert post["date_gmt"] == original["date_gmt"]
    first = posts["first-release"]
    assert first["categories"] == [categories["releases"]["id"]]
    assert sorted(first["tags"]) == sorted([tags["wordpress"]["id"], tags["kubernetes"]["id"]])
    assert first["featured_media"] == media["sunrise"]["id"]
    sunrise_url = media["sunrise"]["source_url"]
    assert f'<a href="{sunrise_url}"><img src="{sunrise_url}"' in first["content"]["raw"]
    assert f"wp-image-{media['sunrise']['id']}" in first["content"]["raw"]
    assert first["excerpt"]["raw"] == f"The first release, announced on {target.url}/first-release/"
    guide = posts["cloning-guide"]
    assert sorted(guide["categories"]) == sorted([categories["guides"]["id"], categories["news"]["id"]])
    assert f'<!-- wp:image {{"id":{media["harbor"]["id"]},"sizeSlug":"medium"}} -->' in guide["content"]["raw"]
    assert f'href="{target.url}/about/team/"' in guide["content"]["raw"]
    assert posts["upcoming"]["status"] == "draft"
    assert source_url_mentions(sites) == 0
