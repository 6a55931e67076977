"""`python -m bench`: what tracing and metrics cost a Dramatiq worker, against bare Dramatiq and the
alternatives, every configuration interleaved in one run so that each result is a ratio to bare
measured minutes apart on the same machine.

Worker runs (per repetition, per mode and process count, every configuration in turn):
  a fresh queue holds MESSAGES messages of a no-op actor; the worker (Dramatiq's CLI, P processes x
  8 threads) boots and idles; its CPU is read from /proc; then the messages become visible at once
  (`prefilled`: they were enqueued before and the list is renamed into place) or a producer process
  starts sending them (`overlapping`); when Redis holds none of them (every message acked) the CPU
  is read again. Worker CPU per message = CPU of the worker processes (user + system, all threads)
  between the two reads / MESSAGES. Every actor run is counted and must equal MESSAGES.
Also: enqueue time per send(), `/metrics` scrape time, shutdown with the collector down, a soak
with the collector down (RSS over 100k messages), and on request a py-spy profile of our worker.
"""
# ruff: noqa: PLC0415, PLR0912, PLR0917 - configuration-dependent imports are the point (each process loads only its stack); the orchestration reads best as it runs

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import redis

from bench import procstat, report
from bench.configs import CONFIGS, DEFAULT_ENQUEUE_CONFIGS, DEFAULT_WORKER_CONFIGS, Config
from bench.services import (
    EXTRAS,
    PROFILER,
    REPO_ROOT,
    BenchCollector,
    ManagedProcess,
    RedisServer,
    free_port,
    install_extras,
)

THREADS = 8
_SETTLE_SECONDS = 2.0
_CLEAN_PREFIXES = ("REDIS_", "WORKER_", "OTEL_", "METRICS_", "PROMETHEUS_", "LOG_", "DRAMATIQ_", "BENCH_", "dramatiq_")


class BenchError(RuntimeError):
    pass


class Bench:
    def __init__(
        self, workdir: Path, redis_server: RedisServer, collector: BenchCollector, extras: Path | None
    ) -> None:
        self.workdir = workdir
        self.redis = redis_server
        self.client = redis.Redis(host="127.0.0.1", port=redis_server.port)
        self.collector = collector
        self.dead_endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        self.extras = extras

    # -- environment ------------------------------------------------------------------------------

    def env(self, config: Config, queue: str, run_dir: Path, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(_CLEAN_PREFIXES)}
        # The processes run in REPO_ROOT with `-m`, so bench/ is importable without PYTHONPATH; only the
        # comparison package installed with `pip install --target` (never into .venv) is added.
        env.pop("PYTHONPATH", None)
        if config.extras:
            if self.extras is None:
                raise BenchError(f"{config.name} needs {', '.join(EXTRAS)}")
            env["PYTHONPATH"] = str(self.extras)
        env.update(
            REDIS_URL=f"redis://127.0.0.1:{self.redis.port}/0",
            BENCH_QUEUE=queue,
            BENCH_RUN_DIR=str(run_dir),
        )
        if config.collector == "up":
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.collector.endpoint
        elif config.collector == "down":
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.dead_endpoint
        if config.ours:
            metrics_dir = run_dir / "metrics"
            metrics_dir.mkdir(parents=True, exist_ok=True)
            env.update(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), LOG_FORMAT="json", LOG_LEVEL="INFO")
        if config.worker == "prometheus":
            env.update(
                dramatiq_prom_db=str(run_dir / "prometheus"),
                dramatiq_prom_host="127.0.0.1",
                dramatiq_prom_port=str(free_port()),
            )
        env.update(extra)
        return env

    def producer(self, config: Config, queue: str, run_dir: Path, mode: str, count: int, tracing: str) -> Any:
        env = self.env(config, queue, run_dir, BENCH_CONFIG=config.producer, BENCH_PRODUCER_TRACING=tracing)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # an API process has none; its metrics stay in memory
        return subprocess.Popen(
            [sys.executable, "-m", "bench.producer", mode, str(count)],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=(run_dir / f"producer-{mode}.log").open("ab"),
        )

    def worker_command(self, config: Config, queue: str, processes: int) -> list[str]:
        module = ["-m", "worker_app._dramatiq_main"] if config.ours else ["-m", "dramatiq"]
        command = [sys.executable, *module, "bench.workers", "--processes", str(processes)]
        command += ["--threads", str(THREADS), "--queues", queue, "--worker-shutdown-timeout", "60000"]
        return [*command, "--skip-logging"] if config.ours else command

    # -- one worker run ---------------------------------------------------------------------------

    def worker_run(
        self,
        config: Config,
        mode: str,
        processes: int,
        messages: int,
        rep: int,
        *,
        sample_rss: bool = False,
        profile: Path | None = None,
    ) -> dict[str, Any]:
        queue = f"bench-{config.name}-{mode}-{processes}p-r{rep}-{uuid.uuid4().hex[:6]}"
        run_dir = self.workdir / "runs" / queue
        run_dir.mkdir(parents=True)
        key = f"dramatiq:{queue}"
        result: dict[str, Any] = {
            "config": config.name,
            "mode": mode,
            "processes": processes,
            "rep": rep,
            "messages": messages,
            "load_at_start": procstat.load_average()[0],
        }
        if mode == "prefilled":
            producer = self.producer(config, queue, run_dir, "prefill", messages, "silent" if config.traced else "none")
            if producer.wait(timeout=600) != 0:
                raise BenchError(f"prefill failed: see {run_dir}")
            if self.client.llen(key) != messages:
                raise BenchError(f"prefill enqueued {self.client.llen(key)} of {messages}")
            self.client.rename(key, f"{key}.hold")
        self.client.delete("dramatiq:__heartbeats__")
        spans_before = self.collector.spans_received()

        worker = ManagedProcess(
            "worker",
            self.worker_command(config, queue, processes),
            run_dir / "worker.log",
            env=self.env(config, queue, run_dir, BENCH_CONFIG=config.worker, BENCH_WORKER="1"),
            cwd=REPO_ROOT,
        )
        try:
            pids = self._wait_booted(worker, run_dir, processes)
            idle0 = self._usage(pids)
            time.sleep(_SETTLE_SECONDS)
            before = self._usage(pids)
            main_before = procstat.usage(worker.pid).cpu_seconds
            result["idle_cpu_ms_per_s"] = (
                sum(before[pid].cpu_seconds - idle0[pid].cpu_seconds for pid in pids) / _SETTLE_SECONDS * 1000
            )
            result["rss_mb_idle"] = [before[pid].rss_bytes / 2**20 for pid in pids]

            spy = None
            if profile is not None:
                spy = self._start_profiler(pids[0], profile)
            stream = None
            started = time.perf_counter()
            if mode == "prefilled":
                self.client.rename(f"{key}.hold", key)
            else:
                stream = self.producer(config, queue, run_dir, "stream", messages, config.producer_tracing)
            first, done, rss_series = self._wait_drained(worker, key, messages, started, stream, pids, sample_rss)
            after = self._usage(pids)
            main_after = procstat.usage(worker.pid).cpu_seconds
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
            if stream is not None and stream.wait(timeout=60) != 0:
                raise BenchError(f"producer failed: see {run_dir}")

            processed = self._wait_counted(run_dir, messages)
            if processed != messages:
                raise BenchError(f"{config.name}: {processed} of {messages} messages processed")
            dead = self.client.zcard(f"{key}.XQ") + self.client.hlen(f"{key}.DQ.msgs")
            if dead:
                raise BenchError(f"{config.name}: {dead} messages dead-lettered or delayed")

            cpu = sum(after[pid].cpu_seconds - before[pid].cpu_seconds for pid in pids)
            wall = done - started
            result.update(
                processed=processed,
                wall_s=wall,
                latency_to_first_s=first - started,
                rate=messages / wall,
                cpu_s=cpu,
                cpu_us_per_msg=cpu / messages * 1e6,
                cpu_per_process_s=[after[pid].cpu_seconds - before[pid].cpu_seconds for pid in pids],
                main_process_cpu_s=main_after - main_before,
                rss_mb=[after[pid].rss_bytes / 2**20 for pid in pids],
                peak_rss_mb=[after[pid].peak_rss_bytes / 2**20 for pid in pids],
                rss_series=rss_series,
            )
        finally:
            stopped = time.perf_counter()
            status = worker.stop(timeout=90)
            result["shutdown_s"] = time.perf_counter() - stopped
            result["exit_status"] = status
            self._forget_queue(queue)

        if config.ours:
            result["spans_dropped"] = _read_dropped(run_dir / "metrics")
        if config.collector == "up" and config.worker != "ours-noop":
            time.sleep(0.5)  # the collector logs a batch once it is exported
            result["spans_received"] = self.collector.spans_received() - spans_before
        if status != 0:
            raise BenchError(f"{config.name}: worker exited with {status}: see {run_dir / 'worker.log'}")
        return result

    def _wait_booted(self, worker: ManagedProcess, run_dir: Path, processes: int) -> list[int]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not worker.running():
                raise BenchError(f"worker exited at boot:\n{worker.output()[-3000:]}")
            pids = sorted(int(path.name[4:]) for path in run_dir.glob("pid-*"))
            # Every consumer polls Redis once its threads run: its broker id is in the heartbeats.
            if len(pids) == processes and self.client.zcard("dramatiq:__heartbeats__") >= processes:
                return pids
            time.sleep(0.05)
        raise BenchError(f"worker did not boot:\n{worker.output()[-3000:]}")

    def _usage(self, pids: list[int]) -> dict[int, procstat.Usage]:
        return {pid: procstat.usage(pid) for pid in pids}

    def _wait_drained(
        self,
        worker: ManagedProcess,
        key: str,
        messages: int,
        started: float,
        stream: Any,
        pids: list[int],
        sample_rss: bool,
    ) -> tuple[float, float, list[tuple[float, float, float]]]:
        """Poll Redis until every message is acked; returns (first fetch, done, rss samples)."""
        first: float | None = None
        series: list[tuple[float, float, float]] = []
        next_sample = started
        deadline = started + max(300.0, messages / 100)
        pipe = self.client.pipeline(transaction=False)
        while True:
            now = time.perf_counter()
            if now > deadline:
                raise BenchError(f"not drained in time; Redis: {self.client.llen(key)} ready")
            if not worker.running():
                raise BenchError(f"worker died:\n{worker.output()[-3000:]}")
            ready, unacked = pipe.llen(key).hlen(f"{key}.msgs").execute()
            if first is None and (stream is not None or ready < messages):
                first = now
            producing = stream is not None and stream.poll() is None
            if sample_rss and now >= next_sample:
                rss = sum(procstat.usage(pid).rss_bytes for pid in pids) / 2**20
                # In prefilled mode every message not yet acked is in `.msgs`, ready or in flight.
                series.append((round(now - started, 2), messages - unacked, round(rss, 2)))
                next_sample = now + 1.0
            if not producing and ready == 0 and unacked == 0:
                if stream is not None and stream.returncode != 0:
                    raise BenchError("producer failed")
                return first or now, now, series
            time.sleep(0.005)

    def _wait_counted(self, run_dir: Path, messages: int) -> int:
        deadline = time.monotonic() + 5
        total = 0
        while time.monotonic() < deadline:
            total = 0
            for path in run_dir.glob("count-[0-9]*"):
                try:
                    total += int(path.read_text() or 0)
                except (OSError, ValueError):
                    continue
            if total >= messages:
                return total
            time.sleep(0.05)
        return total

    def _forget_queue(self, queue: str) -> None:
        key = f"dramatiq:{queue}"
        names = [key, f"{key}.hold", f"{key}.msgs", f"{key}.DQ", f"{key}.DQ.msgs", f"{key}.XQ", f"{key}.XQ.msgs"]
        self.client.delete(*names, *self.client.keys(f"dramatiq:__acks__.*.{queue}*"))

    def _start_profiler(self, pid: int, output: Path) -> subprocess.Popen[bytes]:
        spy = install_extras((PROFILER,)) / "bin" / "py-spy"
        command = [str(spy), "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
        command += ["--output", str(output), "--nonblocking", "--gil"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached and sampling before the messages appear
        return process

    # -- enqueue ----------------------------------------------------------------------------------

    def enqueue_run(self, config: Config, sends: int, rep: int) -> dict[str, Any]:
        queue = f"bench-enqueue-{config.name}-r{rep}-{uuid.uuid4().hex[:6]}"
        run_dir = self.workdir / "runs" / queue
        run_dir.mkdir(parents=True)
        producer = self.producer(config, queue, run_dir, "timed", sends, config.producer_tracing)
        try:
            out, _ = producer.communicate(timeout=600)
        finally:
            self._forget_queue(queue)
        if producer.returncode != 0:
            raise BenchError(f"enqueue {config.name} failed: see {run_dir}")
        measured: dict[str, Any] = json.loads(out)
        return {"config": config.name, "rep": rep, "sends": sends, **measured}

    # -- scrape -----------------------------------------------------------------------------------

    def scrape_run(self) -> dict[str, Any]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(_CLEAN_PREFIXES)}
        env.pop("PYTHONPATH", None)
        env.update(REDIS_URL=f"redis://127.0.0.1:{self.redis.port}/0")
        out = subprocess.run(
            [sys.executable, "-m", "bench.scrape"], env=env, cwd=REPO_ROOT, capture_output=True, check=True, timeout=300
        )
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    # -- the real entrypoint: shutdown with the collector down ---------------------------------------

    def shutdown_run(self, collector: str, messages: int) -> dict[str, Any]:
        """`python -m worker_app` (supervisor, 2 processes) on the `ping` queue: drain, then SIGTERM."""
        run_dir = self.workdir / "runs" / f"shutdown-{collector}-{uuid.uuid4().hex[:6]}"
        run_dir.mkdir(parents=True)
        self._forget_queue("ping")
        config = CONFIGS["ours" if collector == "up" else "ours-down"]
        port = free_port()
        env = self.env(
            config,
            "ping",
            run_dir,
            WORKER_PROCESSES="2",
            WORKER_QUEUES="ping",
            METRICS_HOST="127.0.0.1",
            METRICS_PORT=str(port),
        )
        producer_env = {key: value for key, value in env.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
        sender = subprocess.run(
            [sys.executable, "-m", "bench.producer", "prefill", str(messages)],
            env={**producer_env, "BENCH_CONFIG": "ours", "BENCH_ACTOR": "ping", "BENCH_PRODUCER_TRACING": "silent"},
            cwd=REPO_ROOT,
            capture_output=True,
            check=False,
        )
        if sender.returncode != 0:
            raise BenchError(f"ping producer failed: {sender.stderr.decode()[-2000:]}")
        worker = ManagedProcess("worker", [sys.executable, "-m", "worker_app"], run_dir / "worker.log", env, REPO_ROOT)
        try:
            started = time.perf_counter()
            while self.client.llen("dramatiq:ping") or self.client.hlen("dramatiq:ping.msgs"):
                if not worker.running():
                    raise BenchError(f"worker exited:\n{worker.output()[-3000:]}")
                if time.perf_counter() - started > 300:
                    raise BenchError("ping queue not drained")
                time.sleep(0.05)
            drained = time.perf_counter() - started
            # The exporter retries a batch for OTEL_EXPORTER_OTLP_TIMEOUT (10 s) before it counts it as
            # failed: wait up to 15 s for the counter on /metrics (a collector that is up: 1 s).
            counted_after = None
            waited = time.perf_counter()
            dropped_before_stop = _scrape_dropped(port)
            while time.perf_counter() - waited < (15.0 if collector == "down" else 1.0):
                dropped_before_stop = _scrape_dropped(port)
                if sum(dropped_before_stop.values()):
                    counted_after = time.perf_counter() - waited
                    break
                time.sleep(0.25)
            stopped = time.perf_counter()
            status = worker.stop(timeout=120)
            shutdown = time.perf_counter() - stopped
        finally:
            worker.stop(timeout=30)
            self._forget_queue("ping")
        return {
            "collector": collector,
            "messages": messages,
            "drain_s": drained,
            "shutdown_s": shutdown,
            "exit_status": status,
            "spans_dropped_scraped_before_stop": dropped_before_stop,
            "dropped_counted_after_drain_s": counted_after,
        }


def _read_dropped(directory: Path) -> dict[str, float]:
    """worker_telemetry_spans_dropped_total by reason, from the worker processes' metric files."""
    from prometheus_client.multiprocess import MultiProcessCollector

    dropped: dict[str, float] = {}
    if not directory.is_dir():
        return dropped
    for metric in MultiProcessCollector(None, path=str(directory)).collect():
        if metric.name == "worker_telemetry_spans_dropped":
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    reason = sample.labels["reason"]
                    dropped[reason] = dropped.get(reason, 0.0) + sample.value
    return dropped


def _scrape_dropped(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    dropped = {}
    for line in text.splitlines():
        if line.startswith("worker_telemetry_spans_dropped_total{"):
            labels, value = line.rsplit(" ", 1)
            dropped[labels.split('"')[1]] = float(value)
    return dropped


def environment_facts() -> dict[str, Any]:
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout
    return {
        "cores": os.cpu_count(),
        "cpu_model": procstat.cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dramatiq": version("dramatiq"),
        "opentelemetry_sdk": version("opentelemetry-sdk"),
        "opentelemetry_exporter_otlp_proto_http": version("opentelemetry-exporter-otlp-proto-http"),
        "prometheus_client": version("prometheus-client"),
        "redis_py": version("redis"),
        "redis_server": redis_version.split()[2].removeprefix("v=") if redis_version else "unknown",
        "otelcol": "0.161.0 (bin/otelcol)",
        "instrumentor": EXTRAS[0],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every configuration (default 3)")
    parser.add_argument("--messages", type=int, default=30_000, help="messages per worker run (default 30000)")
    parser.add_argument("--configs", default=",".join(DEFAULT_WORKER_CONFIGS), help="worker configurations")
    parser.add_argument("--modes", default="prefilled,overlapping", help="prefilled and/or overlapping")
    parser.add_argument("--processes", default="1,2", help="worker process counts (default 1,2)")
    parser.add_argument("--enqueue-configs", default=",".join(DEFAULT_ENQUEUE_CONFIGS))
    parser.add_argument("--sends", type=int, default=20_000, help="timed send() calls per enqueue run")
    parser.add_argument("--soak-messages", type=int, default=100_000, help="collector-down soak; 0 skips it")
    parser.add_argument("--soak-config", default="ours-down", help="configuration of the soak (default ours-down)")
    parser.add_argument("--shutdown-messages", type=int, default=3_000, help="real entrypoint shutdown; 0 skips")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: workers,enqueue,scrape,shutdown,soak")
    parser.add_argument("--profile", action="store_true", help="also profile our worker with py-spy")
    parser.add_argument("--output", default=str(REPO_ROOT / ".state" / "bench" / "results"), help="results dir")
    parser.add_argument("--markdown", help="also write the Markdown report here (e.g. docs/benchmarks.md)")
    return parser.parse_args(argv)


def _csv(value: str) -> list[str]:
    return [item for item in (part.strip() for part in value.split(",")) if item]


_MODES = ("prefilled", "overlapping")
_PARTS = ("workers", "enqueue", "scrape", "shutdown", "soak")


def preflight(args: argparse.Namespace) -> str | None:
    """What stops this run before it starts (one line naming it), or None: checked before anything runs."""
    return next(_problems(args), None)


def _problems(args: argparse.Namespace) -> Iterator[str]:
    for option, names in (
        ("--configs", _csv(args.configs)),
        ("--enqueue-configs", _csv(args.enqueue_configs)),
        ("--soak-config", [args.soak_config]),
    ):
        unknown = [name for name in names if name not in CONFIGS]
        if unknown:
            yield f"{option}: unknown configuration {unknown[0]!r} (known: {', '.join(CONFIGS)})"
    for option, values, known in (("--modes", _csv(args.modes), _MODES), ("--skip", _csv(args.skip), _PARTS)):
        unknown = [value for value in values if value not in known]
        if unknown:
            yield f"{option}: unknown value {unknown[0]!r} (known: {', '.join(known)})"
    try:
        counts = [int(value) for value in _csv(args.processes)]
    except ValueError:
        counts = [0]
    if not counts or min(counts) < 1:
        yield f"--processes: expected process counts of at least 1, got {args.processes!r}"
    for option, number in (("--reps", args.reps), ("--messages", args.messages), ("--sends", args.sends)):
        if number < 1:
            yield f"{option}: expected at least 1, got {number}"
    if shutil.which("redis-server") is None:
        yield "redis-server is not on PATH: run `make services` (or `make bench`, which does)"
    if not (REPO_ROOT / "bin" / "otelcol").exists():
        yield "bin/otelcol is missing: run `make tools` (or `make bench`, which does)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = preflight(args)
    if problem is not None:
        print(f"python -m bench: {problem}", file=sys.stderr)
        return 2
    skip = set(_csv(args.skip))
    worker_configs = [CONFIGS[name] for name in _csv(args.configs)]
    enqueue_configs = [CONFIGS[name] for name in _csv(args.enqueue_configs)]
    modes = _csv(args.modes)
    process_counts = [int(value) for value in _csv(args.processes)]
    output = Path(args.output)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = REPO_ROOT / ".state" / "bench" / stamp
    workdir.mkdir(parents=True, exist_ok=True)

    extras = None
    needs_extras = any(config.extras for config in [*worker_configs, *enqueue_configs])
    if needs_extras:
        try:
            extras = install_extras(EXTRAS)
        except subprocess.CalledProcessError:
            print(f"could not install {EXTRAS[0]}: its configuration is left out", file=sys.stderr)
            worker_configs = [config for config in worker_configs if not config.extras]
            enqueue_configs = [config for config in enqueue_configs if not config.extras]

    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment_facts(),
        "settings": {
            "reps": args.reps,
            "messages": args.messages,
            "threads": THREADS,
            "sends": args.sends,
            "modes": modes,
            "processes": process_counts,
            "configs": [config.name for config in worker_configs],
            "labels": {config.name: config.label for config in CONFIGS.values()},
        },
        "worker_runs": [],
        "enqueue_runs": [],
        "failures": [],
        "load": [],
    }

    def progress(text: str) -> None:
        print(
            f"[{time.strftime('%H:%M:%S')} load {procstat.load_average()[0]:.2f}] {text}", file=sys.stderr, flush=True
        )

    redis_server = RedisServer(workdir / "redis")
    collector = BenchCollector(workdir)
    bench = Bench(workdir, redis_server, collector, extras)
    live = (redis_server.process.pid, collector.process.pid)  # the run's own, alive for the whole run
    _, load_mark = procstat.load_since(None, live)
    try:
        for rep in range(1, args.reps + 1):
            if "workers" not in skip:
                for mode in modes:
                    for processes in process_counts:
                        for config in worker_configs:  # interleaved: A B C ... then A B C ... again
                            progress(f"rep {rep} {mode} {processes}p {config.name}")
                            try:
                                run = bench.worker_run(config, mode, processes, args.messages, rep)
                            except BenchError as error:
                                # Recorded and reported; the other configurations still run.
                                results["failures"].append(
                                    {"config": config.name, "mode": mode, "processes": processes, "rep": rep,
                                     "error": str(error)[-2000:]}
                                )  # fmt: skip
                                progress(f"  FAILED: {str(error)[:300]}")
                                continue
                            results["worker_runs"].append(run)
                            progress(
                                f"  {run['rate']:.0f} msg/s, {run['cpu_us_per_msg']:.0f} us CPU/msg, "
                                f"rss {max(run['rss_mb']):.1f} MB, shutdown {run['shutdown_s']:.1f} s"
                            )
            if "enqueue" not in skip:
                for config in enqueue_configs:
                    progress(f"rep {rep} enqueue {config.name}")
                    run = bench.enqueue_run(config, args.sends, rep)
                    results["enqueue_runs"].append(run)
                    progress(f"  {run['wall_us_per_send']:.0f} us/send, {run['cpu_us_per_send']:.0f} us CPU/send")
            load, load_mark = procstat.load_since(load_mark, live)
            results["load"].append({
                "rep": rep,
                "busy_fraction": load and load.busy,
                "outside_fraction": load and load.outside,
                "loadavg": procstat.load_average(),
            })  # fmt: skip
            if load is not None and load.outside > report.BUSY_OUTSIDE_WARNING:
                progress(f"  other work used {load.outside:.0%} of the CPUs in this repetition: see the report")
        if "scrape" not in skip:
            progress("scrape: 20 queues, 50 actors, 2 worker processes")
            results["scrape"] = bench.scrape_run()
        if "shutdown" not in skip and args.shutdown_messages:
            results["shutdown"] = []
            for collector_state in ("up", "down"):
                progress(f"python -m worker_app shutdown, collector {collector_state}")
                results["shutdown"].append(bench.shutdown_run(collector_state, args.shutdown_messages))
        if "soak" not in skip and args.soak_messages:
            progress(f"soak: {args.soak_config}, {args.soak_messages} messages")
            soak = bench.worker_run(CONFIGS[args.soak_config], "prefilled", 1, args.soak_messages, 0, sample_rss=True)
            results["soak"] = soak
        if args.profile:
            profile = workdir / "profile-ours.txt"
            progress("profile: ours, prefilled, 1 process, py-spy")
            results["profile_run"] = bench.worker_run(
                CONFIGS["ours"], "prefilled", 1, args.messages, 0, profile=profile
            )
            results["profile"] = report.summarise_profile(profile)
    finally:
        collector.stop()
        redis_server.stop()
        results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        results["load_average_at_end"] = procstat.load_average()

    results["summary"] = report.summarise(results)
    output.mkdir(parents=True, exist_ok=True)
    (output / "benchmarks.json").write_text(json.dumps(results, indent=1, default=_jsonable) + "\n")
    markdown = report.markdown(results)
    (output / "benchmarks.md").write_text(markdown)
    if args.markdown:
        Path(args.markdown).write_text(markdown)
    print(markdown)
    print(f"results: {output / 'benchmarks.json'}, logs: {workdir}", file=sys.stderr)
    if results["failures"]:
        print(f"{len(results['failures'])} worker run(s) failed: see 'Failed runs' in the report", file=sys.stderr)
        return 1
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value))


def median(values: list[float]) -> float:
    return statistics.median(values)
