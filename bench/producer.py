"""A producer process: `python -m bench.producer MODE COUNT` with the configuration in the environment.

Modes:
- `prefill`: enqueue COUNT messages through the configuration's producer middleware (so traced
  configurations carry their trace context), pipelined 500 at a time; spans are not exported.
- `stream`: COUNT plain `send()` calls, as an API would (overlapping mode).
- `timed`: warm up, then time COUNT `send()` calls; prints wall and CPU microseconds per send.

`BENCH_PRODUCER_TRACING`: `none` (no SDK), `silent` (an SDK that records spans and exports none),
`noop` (BatchSpanProcessor + an exporter that drops), `otlp` (our SDK setup from `OTEL_*`, as
`DramatiqTracing.setup()` does in the API).
"""
# ruff: noqa: PLC0415 - configuration-dependent imports are the point: each process loads only its stack

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

WARMUP = 500
PIPELINE = 500


def _set_up_tracing(kind: str) -> None:
    if kind == "none":
        return
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if kind == "silent":
        trace.set_tracer_provider(TracerProvider())
    elif kind == "noop":
        from bench.naive_otel import install_noop_sdk

        install_noop_sdk("bench-producer")
    elif kind == "otlp":
        from worker_app.observability.telemetry import configure_tracing
        from worker_app.runtime.broker import sdk_config
        from worker_app.runtime.process import process_settings

        configure_tracing(sdk_config(process_settings()))
    else:
        raise ValueError(kind)


def _pipelined(broker: Any) -> Any:
    """Make `broker.enqueue` buffer its Redis calls in a pipeline; returns the pipeline."""
    pipe = broker.client.pipeline(transaction=False)
    dispatch = broker.scripts["dispatch"]
    keys = [broker.namespace]

    def do_enqueue(queue_name: str, *args: Any) -> None:
        dispatch(
            keys=keys,
            args=[
                "enqueue",
                int(time.time() * 1000),
                queue_name,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                0,
                broker._max_unpack_size(),
                *args,
            ],
            client=pipe,
        )
        if len(pipe) >= PIPELINE:
            pipe.execute()

    broker.do_enqueue = do_enqueue
    return pipe


def main() -> int:
    mode, count = sys.argv[1], int(sys.argv[2])
    _set_up_tracing(os.environ.get("BENCH_PRODUCER_TRACING", "none"))
    if os.environ.get("BENCH_ACTOR") == "ping":  # the package's own actor, for the real entrypoint
        from worker_app import tasks

        broker: Any = tasks.broker
        ping = tasks.ping

        def send(index: int) -> None:
            ping.send()

    else:
        from bench import workers

        broker = workers.broker
        noop = workers.bench_noop

        def send(index: int) -> None:
            noop.send(index)

    if mode == "prefill":
        pipe = _pipelined(broker)
        for index in range(count):
            send(index)
        pipe.execute()
        return 0
    if mode == "stream":
        for index in range(count):
            send(index)
        return 0
    if mode == "timed":
        for index in range(WARMUP):
            send(index)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for index in range(count):
            send(index)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        json.dump({"wall_us_per_send": wall / count * 1e6, "cpu_us_per_send": cpu / count * 1e6}, sys.stdout)
        sys.stdout.flush()
        return 0
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Like an API process being stopped: no waiting for the SDK's exit-time flush (a dead collector
    # would hold the process for the exporter's retries). The timed part is over by now.
    os._exit(code)
