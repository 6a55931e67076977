"""Hot-path shortcuts that stand in for library code, each proven equal to it by a test.

Every module here replaces one piece of a library on the per-message (or per-scrape) path and names
the reference behaviour its test compares against; none of them changes what users see. What each
one saves is measured by `make bench` and written in docs/benchmarks.md, not here.

- `direct_hooks`: Dramatiq's signal dispatch (`dramatiq.Broker.emit_before`/`emit_after`),
  tested in `tests/worker/test_fast_paths.py`.
- `traceparent`: the W3C `traceparent` read and written directly (`opentelemetry.propagate`
  `inject`/`extract` with the default propagators), tested in `tests/worker/test_fast_paths.py`.
- `light_span`: our producer and consumer spans (`opentelemetry.sdk.trace.Tracer.start_span` and
  the SDK's span), tested in `tests/worker/test_light_span.py`.
- `otlp_encoding`: OTLP/protobuf span encoding (`opentelemetry.exporter.otlp.proto.common.
  trace_encoder.encode_spans`), tested in `tests/worker/test_otlp_encoding.py`.
- `multiprocess_exposition`: incremental reads of the multiprocess metric files and cached
  exposition (`prometheus_client.multiprocess.MultiProcessCollector` + `generate_latest`), tested
  in `tests/worker/test_multiprocess_exposition.py`.
- `multiprocess_values`: a delivery's metric writes straight into prometheus_client's multiprocess
  files (`Counter.inc`, `Gauge.inc`/`dec`, `Histogram.observe` on label children in multiprocess
  mode), tested in `tests/worker/test_fast_paths.py`.

This package imports nothing else of `worker_app`.
"""
