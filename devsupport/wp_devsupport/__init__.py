"""Test and development support of wp-k8s-service background jobs: what the test suites, `make demo` and
bench/ share. Installed editable into .venv by `make venv`; never part of the worker's wheel or image.

Services on loopback, each a real process on a free port:

* `ports`, `processes`: free ports, waiting, a process with its log file that is always stopped.
* `redis_server`, `otlp_receiver`: a private redis-server; an in-process OTLP/HTTP trace receiver.
* `worker`, `producer`: `python -m worker_app` run and scraped; jobs enqueued the way the API does.
* `stack`: Redis, the OpenTelemetry Collector (`otelcol.yaml`), Prometheus and the worker together,
  shared by the e2e tests and `demo` (`python -m wp_devsupport.demo`, what `make demo` runs).
* `api_server`: the README's FastAPI example (ci/kind/api/app.py) under uvicorn, for the demo.
* `trace_tree`: a job's trace as the collector received it, as the demo prints it (request -> send ->
  process -> the clone's phases).

The chart and the CI files:

* `chart`: `helm template` with the real Helm 3 and 4, the CI scenarios (chart/ci/*-values.yaml),
  strict schema validation.
* `cluster`: the chart against a real etcd + kube-apiserver.
* `observability`: the dashboards and alert rules the chart ships, and their PromQL.
* `ci_files`: the kind end-to-end files (ci/kind/) and the workflow, for tests/ci.
* `wordpress`: two real WordPress sites for the clone tests, and reading them back.

`repo.REPO` is the checkout the package was installed from (editable), where bin/ and chart/ are.
"""
