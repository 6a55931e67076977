"""`python -m bench.hotpath CONFIG PHASE N`: one configuration's per-message hook path, in one process.

No Redis and no worker threads: N messages of a no-op actor go through the broker's `enqueue`
(PHASE `send`) or through what a Dramatiq worker thread does per message, `before_process_message`,
the actor and `after_process_message` (PHASE `process`), in the calling thread; then the tracer
provider is flushed so that exporting is counted too. Made for instruction counts
(`valgrind --tool=callgrind`) and profiles (`python -m cProfile`), which the machine's load does
not disturb, to compare configurations: the difference between `ours` and `bare` is the cost of our
middleware per message. CONFIG: `bare`, `naive` and `instrumentor` (no-op exporters, as in
`bench.configs`), `ours` (OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT, metrics in a fresh multiprocess
directory, JSON logs), `ours-noop` (the same with a no-op span exporter: its instruction counts
repeat to within 1k, while `ours`'s spread by up to 20k as its export thread batches on a timer).
"""
# ruff: noqa: PLC0415 - configuration-dependent imports are the point: each run loads only its stack

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from random import Random
from typing import Any


def _broker(config: str) -> Any:
    if config in ("ours", "ours-noop"):
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="hotpath-metrics-"))
        os.environ.update(WORKER_BROKER="stub", LOG_FORMAT="json", LOG_LEVEL="INFO")
        if config == "ours-noop":  # as bench.configs' ours-noop: our stack, spans to a no-op exporter
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider

            from bench.naive_otel import NoopExporter
            from worker_app.observability.telemetry import CountingBatchSpanProcessor

            provider = TracerProvider()
            provider.add_span_processor(CountingBatchSpanProcessor(NoopExporter()))
            trace.set_tracer_provider(provider)
        import worker_app.worker

        return worker_app.worker.broker
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
    if config == "naive":
        from bench.naive_otel import NaiveOpenTelemetry

        broker.add_middleware(NaiveOpenTelemetry(), before=type(broker.middleware[0]))
    elif config == "instrumentor":  # PYTHONPATH=.state/bench/extras (installed by `python -m bench`)
        from opentelemetry_instrumentor_dramatiq import DramatiqInstrumentor

        from bench.naive_otel import install_noop_sdk

        install_noop_sdk("bench-instrumentor")
        DramatiqInstrumentor().instrument()
    elif config != "bare":
        raise SystemExit(f"unknown configuration {config!r}")
    return broker


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__.split("\n")[0])
    parser.add_argument("config", choices=["bare", "naive", "instrumentor", "ours", "ours-noop"])
    parser.add_argument("phase", choices=["send", "process"])
    parser.add_argument("count", type=int, help="messages (instruction counts: difference of two counts)")
    options = parser.parse_args()
    config, phase, count = options.config, options.phase, options.count
    if count < 1:
        parser.error(f"count must be at least 1, got {count}")
    import dramatiq
    from dramatiq.broker import MessageProxy
    from dramatiq.message import Message

    broker = _broker(config)
    dramatiq.set_broker(broker)
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker, queue_name="bench", actor_name="bench_noop", max_retries=0)
    def bench_noop(index: int) -> None:
        return None

    messages = [bench_noop.message(index) for index in range(count)]
    if phase == "process":
        # Delivered as a worker would get them: encoded by a producer (a traced one for `ours`: a
        # creation context in the options), decoded in the worker.
        random = Random(count)
        encoded = []
        for message in messages:
            if config.startswith("ours"):
                traceparent = f"00-{random.getrandbits(128):032x}-{random.getrandbits(64):016x}-01"
                message.options["otel_context"] = {"traceparent": traceparent}
            encoded.append(message.encode())
    started = time.process_time()
    if phase == "send":
        for message in messages:
            broker.enqueue(message)
    else:
        for data in encoded:
            proxy = MessageProxy(Message.decode(data))
            broker.emit_before("process_message", proxy)
            result = bench_noop(*proxy.args, **proxy.kwargs)
            broker.emit_after("process_message", proxy, result=result)
    from opentelemetry import trace

    provider: Any = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()
    elapsed = time.process_time() - started
    print(f"{config} {phase}: {elapsed / count * 1e6:.1f} us CPU per message ({count} messages)", file=sys.stderr)


if __name__ == "__main__":
    main()
