"""`python -m worker_app.probe`: prove that a worker consumes, end to end through Redis.

Enqueues a `ping` job carrying a random nonce and waits until a worker has recorded that nonce in
Redis. Exit status: 0 processed, 1 not processed in time (or Redis unreachable), 2 bad configuration.
Used by the chart's `helm test`, and handy from any API pod.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time

import redis

from .config.envparse import ConfigError
from .runtime.process import process_settings
from .runtime.settings import DEFAULT_SERVICE_NAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker_app.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default: 60)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    try:
        settings = process_settings()
    except ConfigError as error:
        print(f"{DEFAULT_SERVICE_NAME} probe: configuration error: {error}", file=sys.stderr)
        return 2

    from .tasks import PROBE_KEY_PREFIX, broker, ping  # noqa: PLC0415 - after the settings check

    client = getattr(broker, "client", None)
    if client is None:
        print("probe: WORKER_BROKER=stub has no Redis to probe through", file=sys.stderr)
        return 2
    nonce = secrets.token_hex(8)
    started = time.monotonic()
    try:
        message = ping.send(nonce)
        print(f"probe: sent ping {message.message_id} to {settings.redis.describe()}", flush=True)
        while time.monotonic() - started < args.timeout:
            if client.get(f"{PROBE_KEY_PREFIX}{nonce}") is not None:
                client.delete(f"{PROBE_KEY_PREFIX}{nonce}")
                print(f"probe: processed in {time.monotonic() - started:.2f}s", flush=True)
                return 0
            time.sleep(0.2)
    except redis.RedisError as error:
        print(f"probe: Redis error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        from .observability.telemetry import shutdown_tracing  # noqa: PLC0415

        shutdown_tracing(settings.telemetry_flush_timeout)
    print(f"probe: no worker processed the ping within {args.timeout:.0f}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
