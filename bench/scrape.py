"""`/metrics` scrape time with many queues and actors: `python -m bench.scrape` (REDIS_URL in the env).

Builds what the supervisor serves, with the real classes (`build_registry`, `QueueDepthCollector`,
`MetricsServer`): metric files written by two worker processes that each ran every one of ACTORS
actors spread over QUEUES queues (with retries, errors and exemplars), and the queue-depth read of
QUEUES queues holding messages. Times SCRAPES scrapes over HTTP (text and OpenMetrics) and counts the
Redis round trips and commands of one scrape. Prints JSON.
"""
# ruff: noqa: PLC0415 - configuration-dependent imports are the point: each process loads only its stack

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import redis

QUEUES = 20
ACTORS = 50
SCRAPES = 60


def queue_names() -> list[str]:
    return [f"scrape-q{index:02d}" for index in range(QUEUES)]


def actor_names() -> list[tuple[str, str]]:
    queues = queue_names()
    return [(queues[index % QUEUES], f"actor_{index:02d}") for index in range(ACTORS)]


def write_worker_metrics(directory: str) -> None:
    """What one worker process leaves in the metrics directory after running every actor."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from worker_app.observability.exemplars import ExemplarRecorder
    from worker_app.observability.metrics import PROCESSING_TIME_BUCKETS, PrometheusMetrics

    metrics = PrometheusMetrics(exemplar_dir=directory)
    recorder = ExemplarRecorder(directory, PROCESSING_TIME_BUCKETS)
    for index, (queue, actor) in enumerate(actor_names()):
        children = metrics._metrics_for(queue, actor)
        for outcome, counter in children.processed.items():
            counter.inc(index + 1 if outcome == "success" else 1)
        for seconds in (0.003, 0.04, 0.7, 12.0, 200.0):
            children.processing_time.observe(seconds)
            recorder._latest[(queue, actor, recorder._labels[0])] = (1, 1, seconds, time.time())
        children.retries.inc()
        children.dead_lettered.inc()
        metrics._error_counter(children, "ValueError").inc()
        children.in_progress.inc()
        children.in_progress.dec()
    recorder._write()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "write":
        write_worker_metrics(sys.argv[2])
        return 0

    from worker_app.observability.exposition import ServerRegistry
    from worker_app.observability.queue_depth import QueueDepthCollector
    from worker_app.runtime.health import WorkerHealth, WorkerProcessesCollector
    from worker_app.runtime.server import MetricsServer

    url = os.environ["REDIS_URL"]
    client = redis.Redis.from_url(url)
    queues = queue_names()
    for index, queue in enumerate(queues):  # some depth in every state
        key = f"dramatiq:{queue}"
        client.delete(key, f"{key}.msgs", f"{key}.DQ.msgs", f"{key}.XQ")
        ids = [f"m{index}-{n}" for n in range(5 + index)]
        client.rpush(key, *ids)
        client.hset(f"{key}.msgs", mapping=dict.fromkeys([*ids, "inflight"], "{}"))
        client.hset(f"{key}.DQ.msgs", mapping={"delayed": "{}"})
        client.zadd(f"{key}.XQ", {"dead": 1})

    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as directory:
        for _ in range(2):  # two worker processes, two sets of files
            subprocess.run([sys.executable, "-m", "bench.scrape", "write", directory], check=True)

        round_trips = [0]

        def client_factory() -> redis.Redis:
            counted = redis.Redis.from_url(url, socket_timeout=2.0)
            connection_class = counted.connection_pool.connection_class

            class Counting(connection_class):  # type: ignore[valid-type,misc]
                def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                    round_trips[0] += 1
                    super().send_packed_command(command, check_health)

            counted.connection_pool.connection_class = Counting
            return counted

        depth = QueueDepthCollector(client_factory=client_factory, queues=queues)
        health = WorkerHealth(metrics_dir=directory, expected_processes=2, child_running=lambda: True)
        registry = ServerRegistry(directory, depth, WorkerProcessesCollector(health=health))
        server = MetricsServer(host="127.0.0.1", port=0, registry=registry, health=health)
        server.start()
        endpoint = f"http://127.0.0.1:{server.port}/metrics"

        def scrape(accept: str) -> tuple[float, bytes]:
            request = urllib.request.Request(endpoint, headers={"Accept": accept})
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                body = response.read()
            return time.perf_counter() - started, body

        text_accept = "text/plain;version=0.0.4"
        openmetrics_accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        scrape(text_accept)  # connect to Redis, load the script cache, warm up
        client.config_resetstat()
        before = round_trips[0]
        _, body = scrape(text_accept)
        trips = round_trips[0] - before
        stats = client.info("commandstats")
        commands = {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}
        commands.pop("info", None)
        commands.pop("config|resetstat", None)
        times: dict[str, list[float]] = {"text": [], "openmetrics": []}
        for _ in range(SCRAPES):
            times["text"].append(scrape(text_accept)[0])
            times["openmetrics"].append(scrape(openmetrics_accept)[0])
        _, om_body = scrape(openmetrics_accept)
        server.stop()

    result = {
        "queues": QUEUES,
        "actors": ACTORS,
        "worker_processes": 2,
        "samples": sum(1 for line in body.decode().splitlines() if line and not line.startswith("#")),
        "bytes_text": len(body),
        "bytes_openmetrics": len(om_body),
        "exemplars": om_body.decode().count(" # {"),
        "redis_round_trips_per_scrape": trips,
        "redis_commands_per_scrape": commands,
        "scrapes": SCRAPES,
    }
    for kind, values in times.items():
        values.sort()
        result[f"{kind}_ms_median"] = statistics.median(values) * 1000
        result[f"{kind}_ms_p95"] = values[int(len(values) * 0.95) - 1] * 1000
        result[f"{kind}_ms_max"] = values[-1] * 1000
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
