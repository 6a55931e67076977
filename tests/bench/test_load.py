"""A benchmark report says how much of the machine other work took: CPU ratios from a busy machine read high."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TICKS = os.sysconf("SC_CLK_TCK")
#: A child that burns about this much CPU, then (with an argument) stays alive until killed.
BURN = "import sys, time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\nprint('burnt', flush=True)\nif len(sys.argv) > 1: time.sleep(60)\n"


def _bench(code: str) -> object:
    """Runs `code` with bench/ importable (from the checkout, as `make bench` runs it); its last line is JSON."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


class TestOwnCpu:
    def test_a_child_waited_for_counts_as_the_run_s_own(self):
        used = _bench(
            "import json, subprocess, sys\n"
            "from bench.procstat import own_cpu_seconds\n"
            "before = own_cpu_seconds()\n"
            f"subprocess.run([sys.executable, '-c', {BURN!r}], check=True, capture_output=True)\n"
            "print(json.dumps(own_cpu_seconds() - before))\n"
        )
        assert used >= 0.35

    def test_a_live_descendant_counts_only_when_named(self):
        named, unnamed = _bench(
            "import json, subprocess, sys\n"
            "from bench.procstat import own_cpu_seconds\n"
            f"child = subprocess.Popen([sys.executable, '-c', {BURN!r}, 'stay'], stdout=subprocess.PIPE, text=True)\n"
            "child.stdout.readline()\n"
            "before = own_cpu_seconds()\n"
            "result = [own_cpu_seconds([child.pid]) - before, own_cpu_seconds() - before]\n"
            "child.kill(); child.wait()\n"
            "print(json.dumps(result))\n"
        )
        assert named >= 0.35
        assert unnamed < 0.1


class TestLoadBetween:
    @pytest.mark.parametrize(
        ("busy_ticks", "own_seconds", "busy", "outside"),
        [
            (500, 5.0 * 100 / TICKS, 0.5, 0.0),  # the run was all the busy time
            (500, 1.0 * 100 / TICKS, 0.5, 0.4),  # 100 of 500 busy ticks were the run's
            (100, 3.0 * 100 / TICKS, 0.1, 0.0),  # sampled a moment apart: never below zero
        ],
    )
    def test_busy_time_the_run_did_not_use_is_other_work(self, busy_ticks, own_seconds, busy, outside):
        load = _bench(
            "import json\n"
            "from bench.procstat import LoadMark, load_between\n"
            "before = LoadMark(total_ticks=10_000, idle_ticks=4_000, own_seconds=2.0)\n"
            f"after = LoadMark(total_ticks=11_000, idle_ticks=4_000 + 1_000 - {busy_ticks}, "
            f"own_seconds=2.0 + {own_seconds})\n"
            "load = load_between(before, after)\n"
            "print(json.dumps([load.busy, load.outside]))\n"
        )
        assert load == pytest.approx([busy, outside])

    def test_no_tick_passed_is_no_reading(self):
        assert (
            _bench(
                "import json\n"
                "from bench.procstat import LoadMark, load_between\n"
                "mark = LoadMark(total_ticks=10, idle_ticks=4, own_seconds=1.0)\n"
                "print(json.dumps(load_between(mark, mark)))\n"
            )
            is None
        )


class TestReport:
    @staticmethod
    def _lines(outside: list[float | None]) -> list[str]:
        results = {
            "load": [
                {"rep": rep, "busy_fraction": 0.5, "outside_fraction": value} for rep, value in enumerate(outside, 1)
            ],
            "load_average_at_end": [1.0, 1.0, 1.0],
        }
        return _bench(f"import json\nfrom bench.report import load_lines\nprint(json.dumps(load_lines({results!r})))\n")

    def test_the_share_of_other_work_is_shown_per_repetition(self):
        lines = self._lines([0.02, 0.05])
        assert "busy per repetition (this run included) 50%, 50% (of which other work: 2%, 5%)" in lines[0]
        assert len(lines) == 1

    def test_a_repetition_with_much_other_work_is_flagged(self):
        lines = self._lines([0.02, 0.31])
        assert "other work: 2%, 31%" in lines[0]
        assert lines[1].startswith("**Other work used more than 10% of the CPUs")

    def test_a_run_recorded_before_the_split_shows_busy_only(self):
        lines = self._lines([None])
        assert lines == [
            "Load: CPUs busy per repetition (this run included) 50%; load average at the end 1.00 / 1.00 / 1.00."
        ]
