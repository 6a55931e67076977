"""The local end-to-end stack: Redis, the OpenTelemetry Collector, Prometheus and the worker.

Real processes on loopback, each on a free port, each logging to a file under one directory.
Shared by the e2e tests and `make demo`, so the demo shows exactly what the tests prove.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from .ports import free_port, wait_for_port
from .processes import ManagedProcess, wait_until
from .redis_server import RedisServer
from .repo import BIN
from .worker import WorkerProcess, clean_environment

#: The collector's configuration for the tests and the demo (package data next to this module).
COLLECTOR_CONFIG = Path(__file__).with_name("otelcol.yaml")
SPAN_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def require_tools(*names: str) -> None:
    missing = [name for name in names if not (BIN / name).exists()]
    if missing:
        raise FileNotFoundError(f"missing {', '.join(f'bin/{name}' for name in missing)}: run `make tools`")


@dataclass(frozen=True)
class CollectedSpan:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    service_name: str
    attributes: dict[str, object]
    links: tuple[tuple[str, str], ...]
    status_code: int
    #: Start and end, in nanoseconds since the epoch (0 when the exporter sent none).
    start_ns: int = 0
    end_ns: int = 0

    @property
    def seconds(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9


class Collector:
    """bin/otelcol with wp_devsupport/otelcol.yaml: OTLP/HTTP in, OTLP/JSON lines out to a file."""

    def __init__(self, workdir: Path) -> None:
        require_tools("otelcol")
        self.http_port = free_port()
        self.traces_file = workdir / "traces.jsonl"
        env = clean_environment(
            OTELCOL_HTTP_PORT=str(self.http_port),
            OTELCOL_GRPC_PORT=str(free_port()),
            OTELCOL_TRACES_FILE=str(self.traces_file),
        )
        self.process = ManagedProcess(
            "otelcol", [str(BIN / "otelcol"), "--config", str(COLLECTOR_CONFIG)], workdir / "otelcol.log", env=env
        )
        wait_for_port(self.http_port, timeout=30)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def spans(self) -> list[CollectedSpan]:
        if not self.traces_file.exists():
            return []
        spans = []
        for line in self.traces_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                spans.extend(_spans_of(json.loads(line)))
        return spans


def _attribute_value(value: dict[str, object]) -> object:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(str(value["intValue"]))
    return value


def _spans_of(request: dict[str, Any]) -> list[CollectedSpan]:
    spans = []
    for resource_spans in request.get("resourceSpans", []):
        resource = {a["key"]: _attribute_value(a["value"]) for a in resource_spans["resource"].get("attributes", [])}
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                spans.append(
                    CollectedSpan(
                        name=span["name"],
                        kind=SPAN_KINDS.get(span.get("kind", 0), "unspecified"),
                        trace_id=span["traceId"],
                        span_id=span["spanId"],
                        parent_span_id=span.get("parentSpanId", ""),
                        service_name=str(resource.get("service.name")),
                        attributes={a["key"]: _attribute_value(a["value"]) for a in span.get("attributes", [])},
                        links=tuple((link["traceId"], link["spanId"]) for link in span.get("links", [])),
                        status_code=int(span.get("status", {}).get("code", 0)),
                        start_ns=int(span.get("startTimeUnixNano", 0)),
                        end_ns=int(span.get("endTimeUnixNano", 0)),
                    )
                )
    return spans


class Prometheus:
    """bin/prometheus scraping the worker every second, with exemplar storage on."""

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path] | None = None) -> None:
        require_tools("prometheus")
        self.port = free_port()
        config = workdir / "prometheus.yml"
        lines = [
            "global:",
            "  scrape_interval: 1s",
            "  evaluation_interval: 1s",
            "scrape_configs:",
            "  - job_name: wp-k8s-service-worker",
            "    static_configs:",
            f"      - targets: {json.dumps(targets)}",
        ]
        if rule_files:
            lines += ["rule_files:", *(f"  - {json.dumps(str(path))}" for path in rule_files)]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        command = [
            str(BIN / "prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--enable-feature=exemplar-storage",
        ]
        self.process = ManagedProcess("prometheus", command, workdir / "prometheus.log")
        wait_until(self._ready, 60, message="prometheus ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if not self.process.running():
            raise RuntimeError(f"prometheus exited:\n{self.process.output()}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector (or scalar) of `promql`, as Prometheus's HTTP API returns it.

        `at` (Unix seconds) evaluates it at that instant instead of now: queries that must agree with each other
        are evaluated at one instant, far enough in the past that every scrape started before it is stored.
        """
        params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        response = requests.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body.get('error', body)}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The single value of `promql`, or None when it returns nothing."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise AssertionError(f"{promql!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def exemplars(self, promql: str, seconds: float = 600) -> list[dict[str, Any]]:
        now = time.time()
        response = requests.get(
            f"{self.url}/api/v1/query_exemplars",
            params={"query": promql, "start": str(now - seconds), "end": str(now)},
            timeout=10,
        )
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def wait_for_scrape_of(self, worker_url: str, timeout: float = 30) -> None:
        def scraped() -> bool:
            targets = requests.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            return any(target["health"] == "up" for target in targets)

        wait_until(scraped, timeout, message=f"prometheus scraping {worker_url}")


class Stack:
    """Everything `make demo` and the e2e tests run, started in order and stopped in reverse."""

    def __init__(self, workdir: Path, processes: int = 2, threads: int = 4, **worker_env: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self._stops: list[Callable[[], object]] = []
        try:
            self.redis = RedisServer(workdir / "redis")
            self._stops.append(self.redis.stop)
            self.collector = Collector(workdir)
            self._stops.append(self.collector.process.stop)
            env = clean_environment(
                REDIS_URL=self.redis.url,
                WORKER_PROCESSES=str(processes),
                WORKER_THREADS=str(threads),
                OTEL_EXPORTER_OTLP_ENDPOINT=self.collector.endpoint,
                OTEL_BSP_SCHEDULE_DELAY="500",
                **worker_env,
            )
            self.worker = WorkerProcess(workdir, env)
            self._stops.append(self.worker.stop)
            self.worker.wait_healthy()
            self.prometheus = Prometheus(workdir, [f"127.0.0.1:{self.worker.metrics_port}"])
            self._stops.append(self.prometheus.process.stop)
            self.prometheus.wait_for_scrape_of(self.worker.url)
        except BaseException:
            self.stop()
            raise

    def producer_env(self) -> dict[str, str]:
        """The environment of an API process enqueueing into this stack (tracing on)."""
        return clean_environment(REDIS_URL=self.redis.url, OTEL_EXPORTER_OTLP_ENDPOINT=self.collector.endpoint)

    def logs(self) -> dict[str, Path]:
        return {path.stem: path for path in sorted(self.workdir.rglob("*.log"))}

    def stop(self) -> None:
        while self._stops:
            self._stops.pop()()
