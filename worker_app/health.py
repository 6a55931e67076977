"""Which worker processes are up: each one keeps a marker file while it runs.

Worker processes write `worker-<pid>.alive` into the metrics directory after their threads start
and remove it when they stop. The metrics server counts the markers whose process still exists,
and clears what a crashed process left behind, including its live gauge values.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from dramatiq import Middleware
from prometheus_client import multiprocess

from .exemplars import FILE_PREFIX as EXEMPLARS
from .exemplars import forget_exemplars

if TYPE_CHECKING:
    from dramatiq import Broker, Worker

logger = logging.getLogger(__name__)

_MARKER_PREFIX = "worker-"
_MARKER_SUFFIX = ".alive"


class ProcessHeartbeat(Middleware):
    """Marks a worker process alive between its boot and its shutdown."""

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            marker_path(directory, os.getpid()).touch()

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            forget_process(directory, os.getpid())


def marker_path(directory: str, pid: int) -> Path:
    return Path(directory) / f"{_MARKER_PREFIX}{pid}{_MARKER_SUFFIX}"


def forget_process(directory: str, pid: int) -> None:
    """Drop a process's marker and its live gauge values (they would stick otherwise)."""
    marker_path(directory, pid).unlink(missing_ok=True)
    multiprocess.mark_process_dead(pid, directory)
    forget_exemplars(directory, pid)


def alive_worker_pids(directory: str) -> list[int]:
    """Pids of worker processes that are up; markers of vanished processes are cleaned up."""
    alive = []
    for path in Path(directory).glob(f"{_MARKER_PREFIX}*{_MARKER_SUFFIX}"):
        pid_text = path.name[len(_MARKER_PREFIX) : -len(_MARKER_SUFFIX)]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if _process_exists(pid):
            alive.append(pid)
        else:
            logger.warning("Worker process %d is gone without shutting down; clearing its state", pid)
            forget_process(directory, pid)
    return sorted(alive)


def reset_directory(directory: str) -> None:
    """Create the directory, or empty it of metric files and markers left by an earlier run.

    Only our own file kinds are removed, so a misconfigured path cannot lose anything else.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    leftovers = [*path.glob("*.db"), *path.glob(f"{_MARKER_PREFIX}*{_MARKER_SUFFIX}"), *path.glob(f"{EXEMPLARS}*")]
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
