"""The README's FastAPI API (ci/kind/api/app.py, the README block byte for byte) served by uvicorn on loopback.

uvicorn comes from requirements/dev.txt, at the version the kind job's API image (ci/kind/api) runs
the same app with.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from .ports import free_port, wait_for_port
from .processes import ManagedProcess
from .repo import REPO

#: The directory of the README's API (`app.py`), as the kind API image holds it.
API_DIR = REPO / "ci" / "kind" / "api"


class ApiServer:
    """`uvicorn app:app` on a free loopback port, logging to `<workdir>/api.log`; stopped with `stop()`.

    uvicorn binds its port only after the app's lifespan startup (`DramatiqTracing.setup`) succeeded,
    so an open port means the API is ready to enqueue.
    """

    def __init__(self, workdir: Path, env: Mapping[str, str], timeout: float = 30) -> None:
        if importlib.util.find_spec("uvicorn") is None:
            raise RuntimeError("uvicorn is missing from this environment: run `make venv`")
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "app:app",
            "--app-dir",
            str(API_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--lifespan",
            "on",
            "--timeout-graceful-shutdown",
            "10",
        ]
        self.process = ManagedProcess("api", command, workdir / "api.log", env=env, cwd=API_DIR)
        try:
            wait_for_port(self.port, timeout=timeout)
        except TimeoutError:
            self.process.stop(timeout=10)
            raise RuntimeError(f"the API did not start:\n{self.process.output()[-4000:]}") from None
        except BaseException:  # Ctrl-C while starting: nothing is left running
            self.process.stop(timeout=10)
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, path: str, **params: str | int) -> dict[str, Any]:
        """POST with query parameters (the README routes take them so); the JSON answer."""
        response = requests.post(f"{self.url}{path}", params=params, timeout=30)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def stop(self) -> None:
        """SIGTERM: uvicorn runs the lifespan's shutdown (`DramatiqTracing.shutdown`, the span flush)."""
        self.process.stop(timeout=20)
