"""Prometheus counters of the clone.

`registry=None`: the worker exports metrics of all its processes through multiprocess files
(PROMETHEUS_MULTIPROC_DIR), not through a registry of this process.
"""

from __future__ import annotations

from prometheus_client import Counter

#: Items a clone wrote or decided not to write, by content type (categories, tags, media, pages,
#: posts) and result (copied, updated, skipped, failed). Dry runs are not counted: they change nothing.
CLONE_ITEMS = Counter(
    "wp_clone_items",
    "WordPress items processed by clone_wordpress, by content type and result",
    ["content_type", "result"],
    registry=None,
)
