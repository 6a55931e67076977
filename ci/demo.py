"""`make demo`: the whole job on this machine, end to end, on loopback.

Starts Redis and the worker (2 processes), enqueues sample jobs the way the API does (producer
tracing on), waits for them, and prints what happened: jobs processed and dead-lettered, the trace
of each job from the worker's correlated log lines, and the metric values the worker exports.
Everything it starts is stopped on exit or Ctrl-C; logs stay in .state/demo/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import requests
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
STATE = REPO / ".state" / "demo"
sys.path.insert(0, str(REPO / "tests"))

from testsupport.ports import free_port, wait_for_port  # noqa: E402 - needs the path above
from testsupport.processes import ManagedProcess, wait_until  # noqa: E402
from testsupport.worker import clean_environment, produce  # noqa: E402

PINGS = 20
DELAYED = 5
INVALID = 3


def main() -> int:
    if shutil.which("redis-server") is None:
        print("redis-server is missing: run `make services` first", file=sys.stderr)
        return 1
    if STATE.exists():
        shutil.rmtree(STATE)
    STATE.mkdir(parents=True)
    started: list[ManagedProcess] = []

    def stop_everything(*_: object) -> None:
        for process in reversed(started):
            process.stop(timeout=30)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return run(started)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what the demo started", file=sys.stderr)
        return 130
    finally:
        stop_everything()
        print(f"\nLogs: {STATE.relative_to(REPO)}/ (redis.log, worker.log)")


def run(started: list[ManagedProcess]) -> int:
    redis_port = free_port()
    redis = ManagedProcess(
        "redis",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", str(STATE)],
        STATE / "redis.log",
    )
    started.append(redis)
    wait_for_port(redis_port)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    print(f"Redis         {redis_url}")

    metrics_port = free_port()
    worker_env = clean_environment(
        REDIS_URL=redis_url,
        WORKER_PROCESSES="2",
        WORKER_THREADS="4",
        METRICS_HOST="127.0.0.1",
        METRICS_PORT=str(metrics_port),
        PROMETHEUS_MULTIPROC_DIR=str(STATE / "metrics"),
        OTEL_TRACES_EXPORTER="none",
    )
    worker = ManagedProcess("worker", [sys.executable, "-m", "worker_app"], STATE / "worker.log", env=worker_env)
    started.append(worker)
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    wait_until(lambda: _healthy(metrics_url, worker), 60, message="worker healthy")
    print(f"Worker        2 processes x 4 threads, metrics and health on {metrics_url}")

    jobs: list[dict[str, object]] = [{"actor": "ping", "args": [f"demo-{index}"]} for index in range(PINGS)]
    jobs += [{"actor": "ping", "args": [f"later-{index}"], "options": {"delay": 2000}} for index in range(DELAYED)]
    jobs += [{"actor": "clone_wordpress", "args": ["ftp://old.example", "https://new.example", {}]}] * INVALID
    ids = produce(clean_environment(REDIS_URL=redis_url, OTEL_TRACES_EXPORTER="none"), jobs)
    print(f"Enqueued      {PINGS} pings, {DELAYED} delayed by 2 s, {INVALID} invalid clone requests")

    def finished() -> bool:
        metrics = _scrape(metrics_url)
        done = metrics.get(("dramatiq_messages_processed_total", "ping", "success"), 0)
        dead = metrics.get(("dramatiq_messages_dead_lettered_total", "clone-queue", ""), 0)
        return done >= PINGS + DELAYED and dead >= INVALID

    wait_until(finished, 60, message="all demo jobs handled")
    time.sleep(0.5)
    metrics = _scrape(metrics_url)

    print("\nJobs")
    print(f"  processed   {metrics[('dramatiq_messages_processed_total', 'ping', 'success')]:.0f} pings")
    print(f"  dead-lettered {metrics[('dramatiq_messages_dead_lettered_total', 'clone-queue', '')]:.0f} clone requests")
    print("\nTraces (from the worker's JSON log lines, correlated with each job)")
    for line in _job_log_lines(worker.output(), ids)[:8]:
        print(f"  trace {line['trace_id']} span {line['span_id']} {line['actor']} {line['message']}")
    print("\nMetrics (GET /metrics)")
    for key in sorted(metrics):
        name, queue, detail = key
        if name.startswith("dramatiq_") and metrics[key]:
            print(f"  {name}{{queue={queue}{',' + detail if detail else ''}}} = {metrics[key]:g}")
    return 0


def _healthy(url: str, worker: ManagedProcess) -> bool:
    if not worker.running():
        raise RuntimeError(f"the worker exited:\n{worker.output()}")
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _scrape(url: str) -> dict[tuple[str, str, str], float]:
    values: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=5).text):
        for sample in family.samples:
            labels = sample.labels
            detail = labels.get("outcome") or labels.get("state") or labels.get("error_type") or ""
            key = (sample.name, labels.get("queue", ""), detail)
            if sample.name.endswith(("_bucket", "_created")):
                continue
            values[key] = values.get(key, 0.0) + sample.value
    return values


def _job_log_lines(output: str, ids: list[str]) -> list[dict[str, str]]:
    wanted = set(ids)
    lines = []
    for raw in output.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if record.get("message_id") in wanted and "trace_id" in record:
            lines.append(record)
    return lines


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
