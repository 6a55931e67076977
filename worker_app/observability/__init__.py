"""What the worker tells about itself: traces, metrics, logs.

- `delivery`: one record per delivery, its outcome decided once (`outcomes`), told to observers:
  `tracing` (spans; context in messages via `propagation`), `metrics` (Prometheus, with `exemplars`)
  and `failure_log`.
- `conventions`: attribute names (semantic conventions and our own keys).
- `telemetry`: the OpenTelemetry SDK of a process, configured and flushed within a bound.
- `metrics_dir`: the multiprocess metrics directory's layout; `exposition`: what `/metrics` serves;
  `queue_depth`: queue depth read from Redis at scrape time.
- `logs`: JSON log lines correlated with the trace and the job.

Nothing here reads the environment or the settings: the runtime gives each class what it needs.
Loggers that existed before the package was split keep their names (`worker_app.tracing`, ...),
since log queries select on them.
"""
