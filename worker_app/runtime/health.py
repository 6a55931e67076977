"""Whether the worker is healthy: its worker processes mark themselves alive, the server counts them.

Worker processes keep a marker file in the metrics directory between their boot and their shutdown
(`ProcessHeartbeat`). `WorkerHealth` counts the markers whose process still exists (clearing what a
crashed process left behind, its live gauge values included) and answers `/healthz`; the same count
is the `dramatiq_worker_processes` gauge.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dramatiq import Middleware
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..observability.metrics_dir import MetricsDirectory

if TYPE_CHECKING:
    from dramatiq import Broker, Worker

logger = logging.getLogger("worker_app.health")  # its name from before the split: log queries select on it

#: The gauge of worker processes up.
WORKER_PROCESSES_METRIC = "dramatiq_worker_processes"


class ProcessHeartbeat(Middleware):
    """Marks a worker process alive between its boot and its shutdown.

    :param directory: the metrics directory (`Settings.multiproc_dir`); None marks nothing (a
      process outside the supervisor, such as a test or the API).

    Example::

        broker = RedisBroker(middleware=[ProcessHeartbeat(directory=settings.multiproc_dir), ...])
    """

    def __init__(self, *, directory: str | None) -> None:
        self._directory = MetricsDirectory(directory) if directory else None

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        if self._directory is not None:
            self._directory.marker(os.getpid()).touch()

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        if self._directory is not None:
            self._directory.forget_process(os.getpid())


def alive_worker_pids(directory: MetricsDirectory) -> list[int]:
    """Pids of worker processes that are up; the state of vanished processes is cleared."""
    alive = []
    for pid in directory.marked_pids():
        if _process_exists(pid):
            alive.append(pid)
        else:
            logger.warning("Worker process %d is gone without shutting down; clearing its state", pid)
            directory.forget_process(pid)
    return alive


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReport:
    """The answer of `/healthz`.

    :param healthy: Dramatiq runs and all its worker processes are up.
    :param worker_processes: worker processes up.
    :param expected_processes: worker processes configured.
    :param supervisor_child_running: the Dramatiq process runs.
    """

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
    """Healthy when the Dramatiq process runs and all of its worker processes are up.

    :param metrics_dir: the metrics directory the worker processes mark themselves alive in.
    :param expected_processes: `Settings.processes`.
    :param child_running: whether the Dramatiq process runs (the supervisor knows).

    Example::

        health = WorkerHealth(metrics_dir="/tmp/metrics", expected_processes=2, child_running=lambda: True)
        health.report().healthy
    """

    def __init__(self, *, metrics_dir: str, expected_processes: int, child_running: Callable[[], bool]) -> None:
        self._directory = MetricsDirectory(metrics_dir)
        self._expected = expected_processes
        self._child_running = child_running

    def report(self) -> HealthReport:
        running = self._child_running()
        alive = len(alive_worker_pids(self._directory)) if running else 0
        return HealthReport(
            healthy=running and alive >= self._expected,
            worker_processes=alive,
            expected_processes=self._expected,
            supervisor_child_running=running,
        )


class WorkerProcessesCollector(Collector):
    """`dramatiq_worker_processes`: the worker processes `health` counts up, at scrape time.

    :param health: what counts them.

    Example::

        registry = ServerRegistry(metrics_dir, WorkerProcessesCollector(health=health))
    """

    def __init__(self, *, health: WorkerHealth) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        report = self._health.report()
        gauge = GaugeMetricFamily(WORKER_PROCESSES_METRIC, "Worker processes up in this container.")
        gauge.add_metric([], report.worker_processes)
        yield gauge


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
