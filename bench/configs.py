"""The benchmarked configurations: what each worker process runs and how its producer sends."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    #: BENCH_CONFIG of the worker processes (bench/workers.py).
    worker: str
    #: BENCH_CONFIG of producer processes.
    producer: str
    #: Producer SDK when sending as an API would (overlapping mode, enqueue timing): see bench/producer.py.
    producer_tracing: str
    #: None, "up" (the bench's live collector) or "down" (an endpoint nobody listens on).
    collector: str | None = None
    #: Runs through `python -m worker_app._dramatiq_main` (our logging, --skip-logging) instead of `dramatiq`.
    ours: bool = False
    #: Needs the packages the harness installs into .state/bench/extras (never into requirements).
    extras: bool = False

    @property
    def traced(self) -> bool:
        return self.producer_tracing != "none"


CONFIGS: dict[str, Config] = {
    config.name: config
    for config in (
        Config("bare", "bare Dramatiq (default middleware)", "bare", "bare", "none"),
        Config(
            "prometheus", "+ Dramatiq's Prometheus middleware", "prometheus", "bare", "none"
        ),  # its hooks need after_process_boot, which only workers run: the producer sends bare
        Config("naive", "+ straightforward OTel middleware, no-op exporter", "naive", "naive", "noop"),
        Config(
            "instrumentor",
            "+ PyPI opentelemetry-instrumentor-dramatiq 0.1.4, no-op exporter",
            "instrumentor",
            "instrumentor",
            "noop",
            extras=True,
        ),
        Config(
            "ours",
            "ours: tracing to a live collector + metrics + JSON logs",
            "ours",
            "ours",
            "otlp",
            collector="up",
            ours=True,
        ),
        Config(
            "ours-down",
            "ours, collector down",
            "ours-down",
            "ours",
            "otlp",
            collector="down",
            ours=True,
        ),
        Config(
            "ours-noop",
            "ours, no-op exporter (diagnostic: no OTLP encoding/HTTP)",
            "ours-noop",
            "ours",
            "noop",
            collector="up",
            ours=True,
        ),
    )
}

#: What `python -m bench` runs unless told otherwise (ours-noop is a diagnostic, on request).
DEFAULT_WORKER_CONFIGS = ("bare", "prometheus", "naive", "instrumentor", "ours", "ours-down")
DEFAULT_ENQUEUE_CONFIGS = ("bare", "naive", "instrumentor", "ours", "ours-down")
