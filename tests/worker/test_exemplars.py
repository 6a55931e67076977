"""Processing-time exemplars: the trace of a job that landed in a bucket, single- and multi-process."""

from __future__ import annotations

import json

from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from worker_app.observability.exemplars import ExemplarMultiProcessCollector, ExemplarRecorder, read_exemplars
from worker_app.observability.metrics import PROCESSING_TIME_BUCKETS


def test_in_process_histogram_carries_the_consumer_span_as_exemplar(stack):
    @stack.actor(queue_name="jobs")
    def job():
        return None

    job.send()
    stack.run("jobs")

    (consumer,) = [span for span in stack.spans() if span.kind is SpanKind.CONSUMER]
    exposition = generate_latest(stack.registry).decode()
    bucket_lines = [line for line in exposition.splitlines() if "dramatiq_message_processing_time_bucket" in line]
    with_exemplar = [line for line in bucket_lines if " # {" in line]
    assert len(with_exemplar) == 1, exposition
    assert f'trace_id="{consumer.context.trace_id:032x}"' in with_exemplar[0]
    assert f'span_id="{consumer.context.span_id:016x}"' in with_exemplar[0]


def test_recorded_exemplars_are_merged_newest_first_into_the_multiprocess_histogram(tmp_path, multiprocess_mode):
    recorder = ExemplarRecorder(str(tmp_path), PROCESSING_TIME_BUCKETS)
    recorder.record("jobs", "job", 0.003, 0xA1, 0xB1)
    recorder.record("jobs", "job", 0.004, 0xA2, 0xB2)  # same bucket, newer: wins
    recorder.record("jobs", "job", 7.0, 0xA3, 0xB3)
    recorder.flush()
    older_process = tmp_path / "exemplars_1.json"
    older_process.write_text(json.dumps([["jobs", "job", "0.005", "f" * 32, "e" * 16, 0.001, 1.0]]))

    merged = read_exemplars(str(tmp_path))
    assert merged[("jobs", "job", "0.005")][:3] == (f"{0xA2:032x}", f"{0xB2:016x}", 0.004)
    assert merged[("jobs", "job", "10.0")][:2] == (f"{0xA3:032x}", f"{0xB3:016x}")

    # A multiprocess histogram file for the same series, as a worker process writes it.
    from prometheus_client import Histogram

    with multiprocess_mode(tmp_path):
        histogram = Histogram(
            "dramatiq_message_processing_time", "t", ["queue", "actor"], buckets=PROCESSING_TIME_BUCKETS, registry=None
        )
        histogram.labels("jobs", "job").observe(0.004)

    registry = CollectorRegistry()
    registry.register(ExemplarMultiProcessCollector(str(tmp_path), "dramatiq_message_processing_time"))
    exposition = generate_latest(registry).decode()
    line = next(line for line in exposition.splitlines() if 'le="0.005"' in line)
    assert f'# {{span_id="{0xB2:016x}",trace_id="{0xA2:032x}"}} 0.004' in line
