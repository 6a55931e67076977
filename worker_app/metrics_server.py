"""The worker container's one HTTP endpoint: `/metrics` (all processes aggregated), `/healthz`, `/readyz`."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .exemplars import ExemplarMultiProcessCollector, read_exemplars
from .health import alive_worker_pids
from .multiprocess_exposition import MultiProcessReader, Renderer, Unsupported, encoder_kind
from .queue_depth import QueueDepthCollector
from .readiness import BrokerReadiness

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HealthReport:
    healthy: bool
    worker_processes: int
    expected_processes: int
    supervisor_child_running: bool

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "status": "ok" if self.healthy else "unavailable",
                "worker_processes": self.worker_processes,
                "expected_processes": self.expected_processes,
                "dramatiq_running": self.supervisor_child_running,
            }
        ).encode()


class WorkerHealth:
    """Healthy when the Dramatiq process runs and all of its worker processes are up."""

    def __init__(self, metrics_dir: str, expected_processes: int, child_running: Callable[[], bool]) -> None:
        self._metrics_dir = metrics_dir
        self._expected = expected_processes
        self._child_running = child_running

    def report(self) -> HealthReport:
        running = self._child_running()
        alive = len(alive_worker_pids(self._metrics_dir)) if running else 0
        return HealthReport(
            healthy=running and alive >= self._expected,
            worker_processes=alive,
            expected_processes=self._expected,
            supervisor_child_running=running,
        )


class _WorkerProcessesCollector(Collector):
    def __init__(self, health: WorkerHealth) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        report = self._health.report()
        gauge = GaugeMetricFamily("dramatiq_worker_processes", "Worker processes up in this container.")
        gauge.add_metric([], report.worker_processes)
        yield gauge


HISTOGRAM_WITH_EXEMPLARS = "dramatiq_message_processing_time"


class ServerRegistry(CollectorRegistry):
    """What `/metrics` serves: the worker processes' files, then the queue depth and process count.

    `encode` renders the files' part with `multiprocess_exposition` (incremental reads, cached
    formatting) and the small rest with prometheus_client; `encoder(registry)`, the library's own
    way, gives the same samples (and is what `encode` falls back to).
    """

    def __init__(self, metrics_dir: str, *others: Collector) -> None:
        super().__init__(auto_describe=True)
        self._metrics_dir = metrics_dir
        self.register(ExemplarMultiProcessCollector(metrics_dir, HISTOGRAM_WITH_EXEMPLARS))
        self._rest = CollectorRegistry(auto_describe=True)
        for collector in others:
            self.register(collector)
            self._rest.register(collector)
        self._reader = MultiProcessReader(metrics_dir)
        self._renderers: dict[object, Renderer] = {}

    def encode(self, encoder: Callable[..., bytes]) -> bytes:
        kind = encoder_kind(encoder)
        if kind is None:
            return encoder(self)
        renderer = self._renderers.get(kind)
        if renderer is None:
            renderer = self._renderers[kind] = Renderer(encoder)
        try:
            families = self._reader.families()
        except Unsupported:
            return encoder(self)
        exemplars = read_exemplars(self._metrics_dir) if kind[0] else None
        lines = renderer.render(families, exemplars, HISTOGRAM_WITH_EXEMPLARS)
        lines += renderer.render_metrics(self._rest.collect())
        lines.append(renderer.end())
        return "".join(lines).encode("utf-8")


def build_registry(metrics_dir: str, depth: QueueDepthCollector, health: WorkerHealth) -> ServerRegistry:
    return ServerRegistry(metrics_dir, depth, _WorkerProcessesCollector(health))


class MetricsServer:
    """A small threaded HTTP server; scrapes never wait for one another."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: ServerRegistry,
        health: WorkerHealth,
        readiness: BrokerReadiness | None = None,
    ) -> None:
        handler = _make_handler(registry, health, readiness or BrokerReadiness(health=health, ping=None))
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _make_handler(
    registry: ServerRegistry, health: WorkerHealth, readiness: BrokerReadiness
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "wp-worker-metrics"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                try:
                    body = registry.encode(encoder)
                except Exception:
                    logger.exception("Collecting metrics failed")
                    self._reply(500, b"collecting metrics failed\n", "text/plain; charset=utf-8")
                    return
                self._reply(200, body, content_type)
            elif path == "/healthz":
                report = health.report()
                self._reply(200 if report.healthy else 503, report.as_json(), "application/json")
            elif path == "/readyz":
                ready = readiness.report()
                self._reply(200 if ready.ready else 503, ready.as_json(), "application/json")
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("metrics server: " + format, *args)

    return Handler
