"""wp-k8s-service background jobs: Dramatiq actors, their broker, tracing and metrics.

The API imports `worker_app.tasks` to enqueue; the worker container runs `python -m worker_app`.
Importing this package itself has no side effects.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wp-k8s-service-worker")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
