"""The broker module every benchmarked worker process imports (`dramatiq bench.workers ...`).

`BENCH_CONFIG` picks the middleware stack (see `bench.configs`); `BENCH_QUEUE` is the run's fresh
queue; `BENCH_RUN_DIR` is where each process reports its pid and how many messages its actor ran.
The actor is a no-op that counts, so the benchmark measures the queue and the middleware only.

Counting costs the same in every configuration: one atomic `next()` per message, and a daemon
thread that writes the count every 100 ms (no middleware is added for it: each middleware costs a
call per hook per message, and the point is to compare middleware stacks).
"""
# ruff: noqa: PLC0415 - configuration-dependent imports are the point: each process loads only its stack

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import dramatiq

CONFIG = os.environ.get("BENCH_CONFIG", "bare")
QUEUE = os.environ.get("BENCH_QUEUE", "bench")
RUN_DIR = Path(os.environ.get("BENCH_RUN_DIR", "."))
ACTOR_NAME = "bench_noop"

_processed = itertools.count()


def _processed_so_far() -> int:
    # itertools.count has no public "peek"; its pickle state is the next value.
    state: tuple[int] = _processed.__reduce__()[1]  # type: ignore[assignment]
    return int(state[0])


def _report_forever() -> None:
    path = RUN_DIR / f"count-{os.getpid()}"
    last = -1
    tracing_memory = os.environ.get("WP_BENCH_TRACEMALLOC") == "1"  # where memory grows, on request
    if tracing_memory:
        import tracemalloc

        tracemalloc.start(8)
        first, next_dump = None, time.monotonic() + 10
    while True:
        if tracing_memory and time.monotonic() >= next_dump:
            snapshot = tracemalloc.take_snapshot()
            if first is None:
                first = snapshot
            else:
                top = snapshot.compare_to(first, "traceback")[:8]
                lines = [f"traced {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MB"]
                for stat in top:
                    lines += [str(stat), *stat.traceback.format()[-10:]]
                (RUN_DIR / f"tracemalloc-{os.getpid()}.txt").write_text("\n".join(lines))
            next_dump = time.monotonic() + 10
        count = _processed_so_far()
        if count != last:
            temporary = path.with_name(f".{path.name}.tmp")  # not matched by the harness's count-* glob
            temporary.write_text(str(count))
            temporary.replace(path)
            last = count
        time.sleep(0.1)


def build_broker(config: str) -> Any:
    """The broker of `config`, built the way that configuration's users would build it."""
    url = os.environ["REDIS_URL"]
    if config in ("ours", "ours-down", "ours-noop"):
        if config == "ours-noop":
            # Our whole stack, but spans go to an exporter that drops them: the SDK's export cost
            # (protobuf encoding, HTTP) is left out. configure_tracing keeps an existing SDK provider.
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider

            from bench.naive_otel import NoopExporter
            from worker_app.observability.telemetry import CountingBatchSpanProcessor

            provider = TracerProvider()
            provider.add_span_processor(CountingBatchSpanProcessor(NoopExporter()))
            trace.set_tracer_provider(provider)
        # Exactly what the production worker module does: JSON logging, the broker with our middleware
        # from the environment, and the package's actors (so RSS counts everything the worker loads).
        import worker_app.worker

        return worker_app.worker.broker

    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=url)
    if config == "prometheus":
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    elif config == "naive":
        from bench.naive_otel import NaiveOpenTelemetry

        broker.add_middleware(NaiveOpenTelemetry(), before=type(broker.middleware[0]))
    elif config == "instrumentor":
        from opentelemetry_instrumentor_dramatiq import DramatiqInstrumentor

        from bench.naive_otel import install_noop_sdk

        install_noop_sdk("bench-instrumentor")
        DramatiqInstrumentor().instrument()
    elif config != "bare":
        raise ValueError(f"unknown BENCH_CONFIG {config!r}")
    return broker


broker = build_broker(CONFIG)
dramatiq.set_broker(broker)


@dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name=ACTOR_NAME, max_retries=0)
def bench_noop(index: int) -> None:
    next(_processed)


if os.environ.get("BENCH_WORKER") == "1":  # in worker processes only, not in producers importing this
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    (RUN_DIR / f"pid-{os.getpid()}").write_text(str(os.getpid()))
    threading.Thread(target=_report_forever, name="bench-count", daemon=True).start()
