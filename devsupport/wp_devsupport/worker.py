"""Run `python -m worker_app` for real, scrape it, and stop it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from .ports import free_port
from .processes import ManagedProcess, wait_until
from .repo import REPO as REPO_ROOT

_INHERITED_PREFIXES = ("REDIS_", "WORKER_", "OTEL_", "METRICS_", "PROMETHEUS_", "LOG_", "DRAMATIQ_", "CLONE_")


def clean_environment(**overrides: str) -> dict[str, str]:
    """The current environment without any worker setting, plus `overrides`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(_INHERITED_PREFIXES)}
    env.update(overrides)
    return env


class WorkerProcess:
    def __init__(self, workdir: Path, env: Mapping[str, str], name: str = "worker") -> None:
        self.metrics_port = free_port()
        self.metrics_dir = workdir / f"{name}-metrics"
        full_env = dict(env)
        full_env.setdefault("METRICS_HOST", "127.0.0.1")
        full_env["METRICS_PORT"] = str(self.metrics_port)
        full_env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        self.process = ManagedProcess(
            name, [sys.executable, "-m", "worker_app"], workdir / f"{name}.log", env=full_env, cwd=REPO_ROOT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def wait_healthy(self, timeout: float = 60.0) -> None:
        def healthy() -> bool:
            if not self.process.running():
                raise RuntimeError(f"worker exited with {self.process.process.returncode}:\n{self.process.output()}")
            try:
                return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout, message="worker /healthz 200")

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (sample name, sorted labels)."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def value(self, name: str, **labels: str) -> float:
        return self.scrape().get((name, tuple(sorted(labels.items()))), 0.0)

    def stop(self, timeout: float = 60.0) -> tuple[int | None, float]:
        """SIGTERM; returns (exit status, seconds it took)."""
        started = time.monotonic()
        status = self.process.stop(timeout=timeout)
        return status, time.monotonic() - started

    def output(self) -> str:
        return self.process.output()


def produce(env: Mapping[str, str], jobs: list[dict[str, object]], timeout: float = 120) -> list[str]:
    """Send `jobs` from a separate producer process (wp_devsupport.producer); returns the message ids."""
    import json
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "wp_devsupport.producer"],
        input=json.dumps(jobs),
        env=dict(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"producer failed ({result.returncode}):\n{result.stderr}")
    ids: list[str] = json.loads(result.stdout)
    return ids
