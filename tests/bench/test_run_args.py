"""`python -m bench` refuses a run it cannot do with one line naming why, before it starts anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = None if path is None else {"PATH": path}
    command = [sys.executable, "-m", "bench", "--output", "/nonexistent/never-written", *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False, env=env, timeout=60)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--configs", "bare,ourz"], "--configs: unknown configuration 'ourz'"),
        (["--enqueue-configs", "nope"], "--enqueue-configs: unknown configuration 'nope'"),
        (["--soak-config", "fast"], "--soak-config: unknown configuration 'fast'"),
        (["--modes", "prefilled,sideways"], "--modes: unknown value 'sideways'"),
        (["--skip", "soak,everything"], "--skip: unknown value 'everything'"),
        (["--processes", "1,two"], "--processes: expected process counts of at least 1, got '1,two'"),
        (["--processes", "0"], "--processes: expected process counts of at least 1, got '0'"),
        (["--reps", "0"], "--reps: expected at least 1, got 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_it(args, named):
    result = _bench(*args)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"python -m bench: {named}")


def test_a_missing_redis_server_says_how_to_install_it(tmp_path):
    # A PATH with the interpreter only: no redis-server on it.
    result = _bench("--configs", "bare", path=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "python -m bench: redis-server is not on PATH: run `make services` (or `make bench`, which does)"
    )
    assert not (REPO_ROOT / "nonexistent").exists()
