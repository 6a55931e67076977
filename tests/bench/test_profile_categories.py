"""The profile's breakdown puts each sampled stack where its time went (`bench.report.summarise_profile`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

_TRACING_END = (
    "OpenTelemetryMiddleware.delivery_finished (/w/worker_app/observability/tracing.py:220);"
    "LightSpan.end (/w/worker_app/fastpath/light_span.py:341)"
)
_ON_END = "CountingBatchSpanProcessor.on_end (/w/worker_app/observability/telemetry.py:190)"
_STACKS = {
    # A span encoded as it ends, in the worker thread, under the tracing hook that ended it.
    f"{_TRACING_END};{_ON_END};encode_span (/w/worker_app/fastpath/otlp_encoding.py:299);"
    "_span (/w/worker_app/fastpath/otlp_encoding.py:200)": 3,
    # The rest of that hook.
    f"{_TRACING_END};{_ON_END}": 5,
    # The export thread joining a batch, then sending it.
    "BatchProcessor.worker (/v/opentelemetry/sdk/_shared_internal/__init__.py:150);"
    "_encode (/w/worker_app/fastpath/otlp_encoding.py:340)": 2,
    "BatchProcessor.worker (/v/opentelemetry/sdk/_shared_internal/__init__.py:150);"
    "send (/v/requests/adapters.py:600)": 7,
}


def _shares(tmp_path: Path) -> dict[str, float]:
    raw = tmp_path / "profile.txt"
    raw.write_text("".join(f"{stack} {count}\n" for stack, count in _STACKS.items()))
    code = (
        "import json, sys; from pathlib import Path; from bench.report import summarise_profile; "
        "print(json.dumps(summarise_profile(Path(sys.argv[1]))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(raw)], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    summary = json.loads(result.stdout)
    assert summary["samples"] == 17
    return {row["category"]: round(row["share"] * 17) for row in summary["categories"]}


def test_encoding_at_span_end_and_in_the_export_thread_are_told_apart(tmp_path):
    assert _shares(tmp_path) == {
        "span encoding as each span ends (in the thread that ends it)": 3,
        "tracing middleware hooks (ours + the OTel SDK under them)": 5,
        "span export thread: OTLP protobuf encoding": 2,
        "span export thread: HTTP to the collector, retries": 7,
    }
