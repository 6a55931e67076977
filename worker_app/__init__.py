"""wp-k8s-service background jobs: Dramatiq actors, their broker, tracing and metrics.

The API imports `worker_app.tasks` to enqueue (and `worker_app.producer.DramatiqTracing` to trace
its sends); the worker container runs `python -m worker_app`. Importing this package itself has no
side effects.

Public entry points (they compose the wings below):

- `__main__` (`python -m worker_app`), `probe` (`python -m worker_app.probe`), `worker` (the module
  the Dramatiq CLI imports in each worker process, run through `_dramatiq_main`), `tasks` (the
  actors), `producer` (tracing for the API), `errors` (how a job fails; its path is the `error.type`
  of failed spans).

Wings (subpackages), each importing only wings below it and nothing from this level but `errors`:

- `wordpress`: the clone job (its arguments, validated once, and the work).
- `runtime`: settings, the broker and its middleware order, the supervisor, health, the HTTP server.
- `observability`: the delivery record, tracing, metrics, logs, the SDK's lifecycle.
- `fastpath`: shortcuts that replace library code on hot paths, each tested against the library.
- `config`: queue names and environment parsing, shared by all.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wp-k8s-service-worker")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
