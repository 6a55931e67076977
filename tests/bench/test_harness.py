"""The benchmark harness runs end to end on a tiny workload (the real numbers come from `make bench`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server (make services)")
@pytest.mark.skipif(not (REPO_ROOT / "bin" / "otelcol").exists(), reason="needs bin/otelcol (make tools)")
def test_every_message_is_counted_and_reported(tmp_path):
    command = [
        sys.executable, "-m", "bench",
        "--reps", "1", "--messages", "300", "--configs", "bare,ours", "--modes", "prefilled", "--processes", "1",
        "--enqueue-configs", "bare,ours", "--sends", "200", "--skip", "scrape,shutdown,soak",
        "--output", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    runs = {run["config"]: run for run in report["worker_runs"]}
    assert set(runs) == {"bare", "ours"}
    for run in runs.values():
        assert run["processed"] == 300
        assert run["cpu_us_per_msg"] > 0
        assert run["exit_status"] == 0
    assert runs["ours"]["spans_received"] == 300  # one consumer span per message reached the collector
    assert runs["ours"]["spans_dropped"] == {"export_failed": 0.0, "queue_full": 0.0}
    assert {run["config"] for run in report["enqueue_runs"]} == {"bare", "ours"}
    assert "| goal | measured | met |" in (tmp_path / "benchmarks.md").read_text()
