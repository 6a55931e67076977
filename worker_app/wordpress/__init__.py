"""Content clone of a WordPress site to another through the REST API (the `clone_wordpress` job).

Modules, one job each: `clone_args` (the job's arguments, validated once), `settings` (CLONE_*/WORDPRESS_* configuration), `credentials` (per-site
Application Passwords), `safety` and `transport` (where connections may go), `client` (REST calls),
`reader` (read phase), `rewrite` (links and media URLs), `writer` (write phases), `summary` and
`metrics` (what happened), `run` (the entry point).
"""

from __future__ import annotations

from .clone_args import CloneRequest, parse_clone_request
from .run import run_clone
from .settings import CloneSettings

__all__ = ["CloneRequest", "CloneSettings", "parse_clone_request", "run_clone"]
