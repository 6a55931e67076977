"""The worker container's one HTTP endpoint: `/metrics` (all processes aggregated), `/healthz`, `/readyz`."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder

from ..observability.exposition import ServerRegistry
from .health import WorkerHealth
from .readiness import BrokerReadiness

logger = logging.getLogger("worker_app.metrics_server")  # its name from before the split: log queries select on it


class MetricsServer:
    """A small threaded HTTP server; scrapes never wait for one another.

    :param host: address to listen on (`METRICS_HOST`).
    :param port: port to listen on (`METRICS_PORT`; 0 picks a free one, see `port`).
    :param registry: what `/metrics` serves.
    :param health: what `/healthz` answers (200 when healthy, else 503, with a JSON body).
    :param readiness: what `/readyz` answers (healthy and Redis answering; default: `/healthz`'s answer,
      for a server with no broker to ask).

    Binding happens in the constructor (an `OSError` when the port is taken); serving in `start`.

    Example::

        server = MetricsServer(host="0.0.0.0", port=9191, registry=registry, health=health)
        server.start()
        ...
        server.stop()
    """

    def __init__(
        self,
        *,
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
