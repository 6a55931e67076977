"""/metrics renders the worker processes' files exactly as prometheus_client does, sample for sample."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from worker_app.observability.exposition import ServerRegistry

_WRITER = """
import os, sys, time
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from worker_app.observability.exemplars import ExemplarRecorder
from worker_app.observability.metrics import PROCESSING_TIME_BUCKETS, PrometheusMetrics
metrics = PrometheusMetrics(exemplar_dir=sys.argv[1])
recorder = ExemplarRecorder(sys.argv[1], PROCESSING_TIME_BUCKETS)
for index in range(12):
    queue, actor = f"queue-{index % 3}", f"actor_{index}"
    children = metrics._metrics_for(queue, actor)
    for outcome, counter in children.processed.items():
        counter.inc(index + 1 if outcome == "success" else 1)
    for seconds in (0.003, 0.04, 0.7, 12.0, 5000.0):
        children.processing_time.observe(seconds)
        recorder.record(queue, actor, seconds, 0xABC + index, 0xDEF)
    children.retries.inc()
    metrics._error_counter(children, "ValueError").inc()
    children.in_progress.inc()
recorder.flush()
"""


def _write(directory: Path) -> None:
    """One worker process's metric files (a new pid each time)."""
    subprocess.run([sys.executable, "-c", _WRITER, str(directory)], check=True)


class _Depth:
    def collect(self):
        depth = GaugeMetricFamily("dramatiq_queue_depth", "Messages per queue and state.", labels=["queue", "state"])
        depth.add_metric(["clone-queue", "ready"], 3)
        depth.add_metric(['we"ird\\queue', "dead"], 0)
        yield depth
        up = GaugeMetricFamily("dramatiq_broker_up", "1 when Redis answered.")
        up.add_metric([], 1)
        yield up


def _samples(text: str, openmetrics: bool) -> dict:
    parse = parse_openmetrics if openmetrics else parse_text
    found = {}
    for family in parse(text):
        for sample in family.samples:
            found[(family.name, family.type, sample.name, tuple(sorted(sample.labels.items())))] = (
                sample.value,
                sample.exemplar,
            )
    return found


@pytest.mark.parametrize(
    "accept",
    ["text/plain;version=0.0.4", "application/openmetrics-text;version=1.0.0", "application/openmetrics-text"],
)
def test_same_samples_as_prometheus_client(tmp_path, accept):
    _write(tmp_path)
    _write(tmp_path)  # a second process: values are merged
    registry = ServerRegistry(str(tmp_path), _Depth())
    encoder, _ = choose_encoder(accept)
    openmetrics = "openmetrics" in accept
    for _ in range(2):  # the second time from the caches
        fast = registry.encode(encoder).decode()
        reference = encoder(registry).decode()
        assert _samples(fast, openmetrics) == _samples(reference, openmetrics)
        assert len(fast.splitlines()) == len(reference.splitlines())
    _write(tmp_path)  # a third process appears between scrapes
    assert _samples(registry.encode(encoder).decode(), openmetrics) == _samples(encoder(registry).decode(), openmetrics)
