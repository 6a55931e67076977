"""Exemplars for the processing-time histogram across worker processes.

prometheus_client's multiprocess mode stores no exemplars, so each worker process keeps the latest
traced observation per histogram bucket in memory and writes them to `exemplars_<pid>.json` in the
metrics directory (`metrics_dir`) every couple of seconds (never on the job's path). The metrics server merges the
files into the histogram's buckets, newest first, and OpenMetrics scrapes carry them: a slow bucket
on a dashboard links to the trace of a job that landed in it.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

from .metrics_dir import MetricsDirectory

logger = logging.getLogger("worker_app.exemplars")  # its name from before the split: log queries select on it

_WRITE_INTERVAL = 2.0

# (queue, actor, le) -> (trace_id, span_id, value, unix time)
_Key = tuple[str, str, str]
_Entry = tuple[str, str, float, float]
# In memory the ids stay integers: they are formatted as hex only when written, every couple of seconds.
_RawEntry = tuple[int, int, float, float]


class ExemplarRecorder:
    """Latest traced observation per (queue, actor, bucket) of this process, persisted in the background.

    :param directory: the metrics directory.
    :param buckets: the histogram's bucket bounds.

    Example::

        recorder = ExemplarRecorder("/tmp/metrics", PROCESSING_TIME_BUCKETS)
        recorder.record("clone-queue", "clone_wordpress", 1.5, span_context.trace_id, span_context.span_id)
        recorder.flush()  # at shutdown
    """

    def __init__(self, directory: str, buckets: Sequence[float]) -> None:
        self._directory = MetricsDirectory(directory)
        self._bounds = list(buckets)
        self._labels = [floatToGoString(bound) for bound in self._bounds] + ["+Inf"]
        self._latest: dict[_Key, _RawEntry] = {}
        self._dirty = threading.Event()
        self._lock = threading.Lock()
        self._writer_pid = 0

    def record(self, queue: str, actor: str, value: float, trace_id: int, span_id: int) -> None:
        le = self._labels[bisect.bisect_left(self._bounds, value)]
        # One dict store (atomic under the GIL, so no lock on the job's path); the writer copies the dict.
        self._latest[(queue, actor, le)] = (trace_id, span_id, value, time.time())
        if not self._dirty.is_set():
            self._dirty.set()
        if self._writer_pid != os.getpid():  # first use in this process (threads do not survive a fork)
            self._start_writer()

    def flush(self) -> None:
        """Write now (at shutdown), whatever the schedule."""
        if self._dirty.is_set():
            self._write()

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer_pid == os.getpid():
                return
            self._writer_pid = os.getpid()
        threading.Thread(target=self._run, name="exemplar-writer", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._dirty.wait()
            time.sleep(_WRITE_INTERVAL)
            try:
                self._write()
            except OSError as error:  # a full or vanished directory must not kill the thread
                logger.warning("Could not write exemplars: %s", error)

    def _write(self) -> None:
        self._dirty.clear()
        with self._lock:
            latest = self._latest.copy()
        rows = [
            [*key, format(trace_id, "032x"), format(span_id, "016x"), value, at]
            for key, (trace_id, span_id, value, at) in latest.items()
        ]
        target = self._directory.exemplar_file(os.getpid())
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(rows), encoding="utf-8")
        temporary.replace(target)


def read_exemplars(directory: str) -> dict[_Key, _Entry]:
    """The newest exemplar per key over every process's file."""
    merged: dict[_Key, _Entry] = {}
    for path in MetricsDirectory(directory).exemplar_files():
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being replaced right now, or gone: the next scrape reads it
        for queue, actor, le, trace_id, span_id, value, at in rows:
            key = (queue, actor, le)
            if key not in merged or merged[key][3] < at:
                merged[key] = (trace_id, span_id, float(value), float(at))
    return merged


class ExemplarMultiProcessCollector(Collector):
    """prometheus_client's multiprocess collector, with exemplars put back on one histogram's buckets.

    :param directory: the metrics directory.
    :param histogram: the name of the histogram whose buckets carry exemplars.

    Example::

        registry.register(ExemplarMultiProcessCollector("/tmp/metrics", "dramatiq_message_processing_time"))
    """

    def __init__(self, directory: str, histogram: str) -> None:
        self._directory = directory
        self._histogram = histogram
        self._inner = MultiProcessCollector(None, path=directory)

    def collect(self) -> Iterator[Metric]:
        exemplars: dict[_Key, _Entry] | None = None
        for metric in self._inner.collect():
            if metric.name == self._histogram:
                if exemplars is None:
                    exemplars = read_exemplars(self._directory)
                metric.samples = list(_with_exemplars(metric.samples, f"{self._histogram}_bucket", exemplars))
            yield metric


def _with_exemplars(samples: Iterable[Sample], bucket_name: str, exemplars: dict[_Key, _Entry]) -> Iterator[Sample]:
    for sample in samples:
        if sample.name == bucket_name:
            key = (sample.labels.get("queue", ""), sample.labels.get("actor", ""), sample.labels.get("le", ""))
            found = exemplars.get(key)
            if found is not None:
                trace_id, span_id, value, at = found
                yield sample._replace(exemplar=Exemplar({"trace_id": trace_id, "span_id": span_id}, value, at))
                continue
        yield sample
