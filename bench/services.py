"""The services a benchmark run starts for itself: Redis and a collector, on free loopback ports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from wp_devsupport.ports import free_port, wait_for_port
from wp_devsupport.processes import ManagedProcess
from wp_devsupport.redis_server import RedisServer

REPO_ROOT = Path(__file__).resolve().parents[1]

EXTRAS_DIR = REPO_ROOT / ".state" / "bench" / "extras"
#: Installed with `pip install --target` into EXTRAS_DIR, never into the project's requirements.
EXTRAS = ("opentelemetry-instrumentor-dramatiq==0.1.4",)
PROFILER = "py-spy==0.4.3"

__all__ = ["BenchCollector", "ManagedProcess", "RedisServer", "free_port", "install_extras", "wait_for_port"]

_SPANS = re.compile(r'"otelcol.signal": "traces".*"spans": (\d+)')


class BenchCollector:
    """bin/otelcol with bench/otelcol.yaml: receives OTLP/HTTP, logs one line per batch, keeps nothing."""

    def __init__(self, workdir: Path) -> None:
        executable = REPO_ROOT / "bin" / "otelcol"
        if not executable.exists():
            raise FileNotFoundError("bin/otelcol is missing: run `make tools`")
        self.port = free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL")}
        env["OTELCOL_HTTP_PORT"] = str(self.port)
        self.process = ManagedProcess(
            "otelcol",
            [str(executable), "--config", str(REPO_ROOT / "bench" / "otelcol.yaml")],
            workdir / "otelcol.log",
            env=env,
        )
        wait_for_port(self.port, timeout=30)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans_received(self) -> int:
        return sum(int(match.group(1)) for match in _SPANS.finditer(self.process.output()))

    def stop(self) -> None:
        self.process.stop(timeout=10)


def install_extras(packages: tuple[str, ...]) -> Path:
    """Install `packages` (pinned, without dependencies: the venv has them) into EXTRAS_DIR once."""
    marker = EXTRAS_DIR / (".installed-" + "-".join(sorted(packages)).replace("=", "_"))
    if not marker.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--upgrade",
                "--no-deps",
                "--target",
                str(EXTRAS_DIR),
                *packages,
            ],
            check=True,
        )
        marker.touch()
    return EXTRAS_DIR
