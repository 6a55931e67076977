"""The metrics directory (`PROMETHEUS_MULTIPROC_DIR`) and what lives in it: the only module that knows.

The worker processes and the metrics server share one directory:

- `*.db`: prometheus_client's multiprocess metric files (their names are the library's);
- `worker-<pid>.alive`: a marker each worker process keeps while it runs (`runtime.health`);
- `exemplars_<pid>.json`: the latest traced observations of a process (`exemplars`).
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import multiprocess

_MARKER_PREFIX = "worker-"
_MARKER_SUFFIX = ".alive"
_EXEMPLARS_PREFIX = "exemplars_"
_EXEMPLARS_SUFFIX = ".json"
_METRIC_FILES = "*.db"


class MetricsDirectory:
    """One metrics directory and its layout.

    :param path: the directory (`Settings.multiproc_dir`, or the supervisor's private one).

    Example::

        directory = MetricsDirectory("/tmp/metrics")
        directory.reset()                          # the supervisor, before starting Dramatiq
        directory.marker(os.getpid()).touch()      # a worker process, once up
        directory.forget_process(os.getpid())      # ... and when it stops
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"MetricsDirectory({str(self.path)!r})"

    def metric_files(self) -> list[str]:
        """The prometheus_client multiprocess files, as the library's collector globs them."""
        return [str(path) for path in self.path.glob(_METRIC_FILES)]

    def marker(self, pid: int) -> Path:
        """The marker a worker process keeps while it runs."""
        return self.path / f"{_MARKER_PREFIX}{pid}{_MARKER_SUFFIX}"

    def marked_pids(self) -> list[int]:
        """Pids of the processes that left a marker (running or not)."""
        pids = []
        for path in self.path.glob(f"{_MARKER_PREFIX}*{_MARKER_SUFFIX}"):
            pid_text = path.name[len(_MARKER_PREFIX) : -len(_MARKER_SUFFIX)]
            if pid_text.isdigit():
                pids.append(int(pid_text))
        return sorted(pids)

    def exemplar_file(self, pid: int) -> Path:
        """Where a process writes its exemplars."""
        return self.path / f"{_EXEMPLARS_PREFIX}{pid}{_EXEMPLARS_SUFFIX}"

    def exemplar_files(self) -> list[Path]:
        return list(self.path.glob(f"{_EXEMPLARS_PREFIX}*{_EXEMPLARS_SUFFIX}"))

    def forget_process(self, pid: int) -> None:
        """Drop a process's marker, its live gauge values (they would stick otherwise) and exemplars."""
        self.marker(pid).unlink(missing_ok=True)
        multiprocess.mark_process_dead(pid, str(self.path))
        self.exemplar_file(pid).unlink(missing_ok=True)

    def reset(self) -> None:
        """Create the directory, or empty it of metric files, markers and exemplars of an earlier run.

        Only these file kinds are removed, so a misconfigured path cannot lose anything else.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        leftovers = [
            *self.path.glob(_METRIC_FILES),
            *self.path.glob(f"{_MARKER_PREFIX}*{_MARKER_SUFFIX}"),
            *self.path.glob(f"{_EXEMPLARS_PREFIX}*"),
        ]
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
