"""Configuration the worker finds unusable at start: one line naming the variable, exit status 2."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from worker_app.config.envparse import ConfigError
from worker_app.runtime.settings import Settings
from worker_app.runtime.startup_checks import listen_problem, prepare_metrics_directory
from wp_devsupport.ports import free_port
from wp_devsupport.worker import REPO_ROOT, clean_environment


def run_worker(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker_app"],
        env=clean_environment(**env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(json.loads(lines[0])["message"])


def test_an_address_that_is_not_this_machines_names_metrics_host(tmp_path):
    # 192.0.2.1 (TEST-NET-1) is never a local address; binding it sends nothing.
    line = one_error_line(run_worker(METRICS_HOST="192.0.2.1", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "m")))
    assert line.startswith("configuration error: METRICS_HOST: cannot listen on '192.0.2.1'")


def test_a_port_in_use_names_metrics_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_worker(METRICS_HOST="127.0.0.1", METRICS_PORT=str(port), PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert one_error_line(result).startswith(f"configuration error: METRICS_PORT: cannot listen on 127.0.0.1:{port}")


def test_listen_problems_are_attributed_by_cause():
    assert listen_problem("nope", 1, socket.gaierror(-2, "Name or service not known")).variable == "METRICS_HOST"
    assert listen_problem("::1", 1, OSError(errno.EAFNOSUPPORT, "not supported")).variable == "METRICS_HOST"
    assert listen_problem("0.0.0.0", 80, OSError(errno.EACCES, "Permission denied")).variable == "METRICS_PORT"


@pytest.mark.parametrize("kind", ["under-a-file", "is-a-file"])
def test_an_unusable_metrics_directory_is_one_line_naming_it(tmp_path, kind):
    a_file = tmp_path / "file"
    a_file.write_text("")
    directory = a_file / "metrics" if kind == "under-a-file" else a_file
    line = one_error_line(run_worker(METRICS_HOST="127.0.0.1", PROMETHEUS_MULTIPROC_DIR=str(directory)))
    assert line.startswith(f"configuration error: PROMETHEUS_MULTIPROC_DIR: cannot use {directory}")


def test_a_usable_metrics_directory_is_created_and_emptied_of_old_metrics(tmp_path):
    directory = tmp_path / "a" / "b"
    prepare_metrics_directory(str(directory))
    (directory / "counter_1.db").write_bytes(b"old")
    (directory / "keep.txt").write_text("not ours")
    prepare_metrics_directory(str(directory))
    assert sorted(path.name for path in Path(directory).iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("value", ["clone/1\r\nX-Injected: 1", "clone/1\nX: y", "a\x00b", "tab\there"])
def test_a_user_agent_with_control_characters_is_refused(value):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"CLONE_USER_AGENT": value})
    assert raised.value.variable == "CLONE_USER_AGENT"
    assert "\n" not in str(raised.value)


def test_a_plain_user_agent_is_kept():
    assert Settings.from_env({"CLONE_USER_AGENT": " my-cloner/2 (ops@example.com) "}).clone.user_agent == (
        "my-cloner/2 (ops@example.com)"
    )


@pytest.mark.parametrize("value", ["5", "0", "nope"])
def test_heartbeat_timeout_is_bounded(value):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"WORKER_HEARTBEAT_TIMEOUT": value})
    assert raised.value.variable == "WORKER_HEARTBEAT_TIMEOUT"
