"""`python -m worker_app`: serve metrics and health, run Dramatiq, and stop it gracefully.

The supervisor is PID 1 in the container. It runs the Dramatiq CLI as a child in its own process
group (so a terminal's Ctrl-C reaches Dramatiq once, through us, rather than twice: a second signal
makes Dramatiq kill running jobs), forwards SIGTERM/SIGINT as one SIGTERM, and exits with the
child's status. The HTTP server lives here, outside the worker processes, so a scrape never
competes with jobs for a worker's GIL and keeps answering while workers restart.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import types

import redis

from ..config.envparse import ConfigError
from ..config.queues import ALL_QUEUES
from ..observability.exposition import ServerRegistry
from ..observability.queue_depth import QueueDepthCollector
from .health import WorkerHealth, WorkerProcessesCollector
from .readiness import BrokerReadiness
from .server import MetricsServer
from .settings import Settings
from .startup_checks import listen_problem, prepare_metrics_directory

logger = logging.getLogger("worker_app.supervisor")

#: Exit status for a configuration error (a bad variable, a port that cannot be listened on).
EXIT_CONFIG = 2
#: The module the Dramatiq CLI imports in each worker process (logging, the broker, the actors).
WORKER_MODULE = "worker_app.worker"
#: What runs the Dramatiq CLI with this package's logging.
DRAMATIQ_LAUNCHER = "worker_app._dramatiq_main"


class Supervisor:
    """Runs Dramatiq as a child process, serves `/metrics` and `/healthz`, stops gracefully.

    The metrics directory is `settings.multiproc_dir`, or a private temporary one removed at exit;
    it is emptied of metric files at start and handed to the child as `PROMETHEUS_MULTIPROC_DIR`.
    SIGTERM/SIGINT become one SIGTERM to Dramatiq; `run` returns the exit status for the container.

    :param settings: the process's settings (queues, processes, threads, timeouts, metrics address).

    Example::

        settings = process_settings()
        setup_logging(settings)
        sys.exit(Supervisor(settings=settings).run())
    """

    def __init__(self, *, settings: Settings) -> None:
        self._settings = settings
        # Without a configured directory, a private one: two local workers must not share (and wipe)
        # each other's metric files.
        self._owned_dir = None if settings.multiproc_dir else tempfile.mkdtemp(prefix="wp-worker-metrics-")
        self._metrics_dir = settings.multiproc_dir or self._owned_dir or ""
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._ping_client: redis.Redis | None = None

    def run(self) -> int:
        settings = self._settings
        try:
            prepare_metrics_directory(self._metrics_dir)
        except ConfigError as error:
            logger.error("configuration error: %s", error)
            return EXIT_CONFIG
        health = WorkerHealth(
            metrics_dir=self._metrics_dir, expected_processes=settings.processes, child_running=self._child_running
        )
        # Every known queue, consumed here or not: any pod can show the whole backlog.
        depth = QueueDepthCollector(client_factory=self._depth_client, queues=ALL_QUEUES)
        registry = ServerRegistry(self._metrics_dir, depth, WorkerProcessesCollector(health=health))
        try:
            server = MetricsServer(
                host=settings.metrics_host,
                port=settings.metrics_port,
                registry=registry,
                health=health,
                readiness=BrokerReadiness(
                    health=health, ping=self._broker_ping if settings.broker == "redis" else None
                ),
            )
        except OSError as error:
            logger.error("configuration error: %s", listen_problem(settings.metrics_host, settings.metrics_port, error))
            return EXIT_CONFIG
        server.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # Dramatiq's reload-on-HUP cannot re-exec us
        logger.info(
            "Starting worker",
            extra={
                "queues": list(settings.queues),
                "processes": settings.processes,
                "threads": settings.threads,
                "redis": settings.redis.describe(),
                "metrics_port": server.port,
            },
        )
        try:
            if self._stopping:
                return 0
            self._child = subprocess.Popen(
                self._dramatiq_command(),
                env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir},
                process_group=0,
            )
            self._forward_pending_stop()
            returncode = self._child.wait()
        finally:
            server.stop()
            if self._owned_dir:
                shutil.rmtree(self._owned_dir, ignore_errors=True)
        return self._exit_status(returncode)

    def _dramatiq_command(self) -> list[str]:
        settings = self._settings
        return [
            sys.executable,
            "-m",
            DRAMATIQ_LAUNCHER,
            WORKER_MODULE,
            "--processes",
            str(settings.processes),
            "--threads",
            str(settings.threads),
            "--worker-shutdown-timeout",
            str(int(settings.shutdown_timeout * 1000)),
            "--skip-logging",
            "--queues",
            *settings.queues,
        ]

    def _depth_client(self) -> redis.Redis:
        from .broker import redis_client  # noqa: PLC0415 - keeps the middleware stack out of the supervisor

        # Short timeouts and no retries: a scrape must answer even when Redis does not.
        return redis_client(self._settings, socket_timeout=1.0, fail_fast=True)

    def _broker_ping(self) -> object:
        if self._ping_client is None:
            self._ping_client = self._depth_client()
        return self._ping_client.ping()

    def _forward_pending_stop(self) -> None:
        """A stop signal that arrived while the child was being started is delivered now."""
        if self._stopping and self._child is not None and self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)

    def _child_running(self) -> bool:
        return self._child is not None and self._child.poll() is None

    def _on_stop_signal(self, signum: int, _frame: types.FrameType | None) -> None:
        if self._stopping:
            logger.info("Already stopping; waiting for running jobs (up to %.0fs)", self._settings.shutdown_timeout)
            return
        self._stopping = True
        logger.info("Received %s; stopping gracefully", signal.Signals(signum).name)
        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)

    def _exit_status(self, returncode: int) -> int:
        if returncode < 0:
            # Killed by a signal: report it the way a shell would.
            logger.error("Dramatiq was killed by %s", signal.Signals(-returncode).name)
            return 128 - returncode
        if returncode != 0 or not self._stopping:
            logger.error("Dramatiq exited unexpectedly with status %d", returncode)
            return returncode or 1
        logger.info("Worker stopped")
        return 0
