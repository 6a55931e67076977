"""The clone's result: counts per content type, bounded error and plan lists, as JSON-able data.

The summary is the actor's return value (logged, and stored when a result backend is configured),
so every list in it is bounded: a site with 50,000 posts must not produce a 50,000-entry result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .clone_args import CONTENT_TYPES
from .metrics import CLONE_ITEMS

RESULTS: tuple[str, ...] = ("copied", "updated", "skipped", "failed")
#: The dry-run plan's word for each result.
ACTIONS = {"copied": "create", "updated": "update", "skipped": "skip", "failed": "fail"}
MAX_ERRORS = 50
MAX_PLAN_ENTRIES = 200


@dataclass(kw_only=True)
class Summary:
    """What a clone did, counted as it goes: per content type and result, errors, the dry run's plan.

    :param source_url: the source site.
    :param target_url: the target site.
    :param dry_run: nothing is written (and nothing counted in `wp_clone_items_total`).
    :param conflict: the conflict policy.
    :param content_types: the content types chosen.

    Example::

        summary = Summary(source_url="https://a.example", target_url="https://b.example", dry_run=False,
                          conflict="skip", content_types=("posts",))
        summary.as_dict(duration_seconds)
    """

    source_url: str
    target_url: str
    dry_run: bool
    conflict: str
    content_types: tuple[str, ...]
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {kind: dict.fromkeys(RESULTS, 0) for kind in CONTENT_TYPES}
    )
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_dropped: int = 0
    plan: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    plan_dropped: dict[str, int] = field(default_factory=dict)
    #: Items the source holds beyond `max_items`, by content type (they were not read).
    not_read: dict[str, int] = field(default_factory=dict)
    links_rewritten: int = 0
    media_attached: int = 0
    source_authenticated: bool = False

    def record(
        self,
        content_type: str,
        result: str,
        slug: str,
        *,
        action: str | None = None,
        fields: list[str] | None = None,
        reason: str | None = None,
    ) -> None:
        """One item's outcome. `action` (create/update/skip) goes into the dry-run plan."""
        self.counts[content_type][result] += 1
        if self.dry_run:
            entries = self.plan.setdefault(content_type, [])
            if len(entries) < MAX_PLAN_ENTRIES:
                entry: dict[str, Any] = {"slug": slug, "action": action or ACTIONS[result]}
                if fields:
                    entry["fields"] = fields
                if reason:
                    entry["reason"] = reason
                entries.append(entry)
            else:
                self.plan_dropped[content_type] = self.plan_dropped.get(content_type, 0) + 1
        else:
            CLONE_ITEMS.labels(content_type=content_type, result=result).inc()

    def fail(self, content_type: str, slug: str, error: Exception) -> None:
        self.record(content_type, "failed", slug, action="fail", reason=str(error))
        self.note_error(content_type, slug, error)

    def note_error(self, content_type: str, slug: str, error: Exception) -> None:
        """An error worth reporting that did not fail an item by itself (e.g. attaching a medium)."""
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"content_type": content_type, "slug": slug, "error": str(error)})
        else:
            self.errors_dropped += 1

    def phase_counts(self, content_types: tuple[str, ...]) -> dict[str, int]:
        """Totals of some content types by result, for a phase span's attributes."""
        return {result: sum(self.counts[kind][result] for kind in content_types) for result in RESULTS}

    def as_dict(self, duration_seconds: float) -> dict[str, Any]:
        result: dict[str, Any] = {
            "source_url": self.source_url,
            "target_url": self.target_url,
            "dry_run": self.dry_run,
            "conflict": self.conflict,
            "content_types": list(self.content_types),
            "counts": {kind: dict(self.counts[kind]) for kind in self.content_types},
            "links_rewritten": self.links_rewritten,
            "media_attached": self.media_attached,
            "source_authenticated": self.source_authenticated,
            "errors": list(self.errors),
            "duration_seconds": round(duration_seconds, 3),
        }
        if self.errors_dropped:
            result["errors_not_listed"] = self.errors_dropped
        if self.not_read:
            result["not_read"] = dict(self.not_read)
        if self.dry_run:
            # In a dry run "copied"/"updated" mean "would be"; the plan lists the items.
            result["plan"] = {kind: list(self.plan.get(kind, [])) for kind in self.content_types}
            if self.plan_dropped:
                result["plan_not_listed"] = dict(self.plan_dropped)
        return result
