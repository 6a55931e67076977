"""Content clone of a WordPress site to another through the REST API (the `clone_wordpress` job).

Modules, one job each: `settings` (CLONE_*/WORDPRESS_* configuration), `credentials` (per-site
Application Passwords), `safety` and `transport` (where connections may go), `client` (REST calls),
`reader` (read phase), `rewrite` (links and media URLs), `writer` (write phases), `summary` and
`metrics` (what happened), `run` (the entry point).
"""

from __future__ import annotations

from .run import run_clone
from .settings import CloneSettings

__all__ = ["CloneSettings", "run_clone"]
