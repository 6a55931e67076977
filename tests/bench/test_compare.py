"""`python -m bench.compare` puts two runs side by side: each configuration's ratio to its own run's bare."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _compare(tmp_path: Path, before: dict, after: dict) -> subprocess.CompletedProcess[str]:
    """`python -m bench.compare` on two runs (bench/ is run from the checkout, as `make bench` does)."""
    paths = [tmp_path / "before.json", tmp_path / "after.json"]
    for path, run in zip(paths, (before, after), strict=True):
        path.write_text(json.dumps(run))
    command = [sys.executable, "-m", "bench.compare", *map(str, paths)]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)


def _run(started: str, ours_ratio: float, ours_rss: float, send_ratio: float, tracing_share: float) -> dict:
    def stats(value: float) -> dict:
        return {"median": value, "min": value, "max": value}

    return {
        "started": started,
        "environment": {"cpu_model": "test CPU"},
        "summary": {
            "workers": [
                {"config": "bare", "mode": "prefilled", "processes": 1, "cpu_ratio": stats(1.0)},
                {
                    "config": "ours",
                    "mode": "prefilled",
                    "processes": 1,
                    "cpu_ratio": stats(ours_ratio),
                    "rss_delta_mb": stats(ours_rss),
                },
            ],
            "enqueue": [{"config": "bare"}, {"config": "ours", "wall_ratio": stats(send_ratio)}],
        },
        "profile": {"categories": [{"category": "tracing middleware hooks", "share": tracing_share}]},
    }


def test_each_row_shows_the_value_before_and_after(tmp_path):
    result = _compare(
        tmp_path,
        _run("2026-11-27T07:35", 1.53, 14.8, 1.43, 0.185),
        _run("2026-11-30T23:35", 1.31, 13.9, 1.15, 0.072),
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Before: the run of 2026-11-27 (test CPU); after: the run of 2026-11-30 (test CPU)." in text
    assert "| ours | prefilled, 1 | 1.530 | 1.310 | +14.8 | +13.9 |" in text
    assert "| ours | 1.430 | 1.150 |" in text
    assert "| tracing middleware hooks | 18.5% | 7.2% |" in text
    assert "| bare |" not in text  # the reference of both runs, 1.000 by definition


def test_a_configuration_new_in_the_later_run_has_no_before(tmp_path):
    before, after = _run("2026-11-27", 1.5, 15.0, 1.4, 0.2), _run("2026-11-30", 1.3, 14.0, 1.1, 0.1)
    after["summary"]["workers"].append(
        {"config": "ours-down", "mode": "prefilled", "processes": 1, "cpu_ratio": {"median": 1.2}}
    )
    result = _compare(tmp_path, before, after)
    assert result.returncode == 0, result.stderr
    assert "| ours-down | prefilled, 1 | - | 1.200 | - | - |" in result.stdout


def test_an_unreadable_run_is_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "missing.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.compare", str(missing), str(missing)],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert f"{missing}: [Errno 2]" in result.stderr
    assert "Traceback" not in result.stderr
