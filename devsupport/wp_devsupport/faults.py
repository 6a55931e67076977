"""Fault injection against the real worker: Redis with an append-only file, counted from that file.

Every write Redis accepts is in its AOF, in order, including the effects of Dramatiq's Lua scripts.
`ping(nonce=...)` writes `SET wp-k8s-service:probe:<nonce>` each time it runs, so the AOF tells how
many times each job ran, and a retry is an `HSET`/`HSETNX` of the message into the delay queue's
hash. Nothing in the worker is instrumented for the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message

from .ports import free_port, wait_for_port
from .processes import ManagedProcess, wait_until
from .repo import REPO as REPO_ROOT
from .worker import WorkerProcess, clean_environment

PROBE_PREFIX = b"wp-k8s-service:probe:"
NS = "dramatiq"
QUEUE = "ping"
REPORT = REPO_ROOT / ".state" / "faults" / "report.jsonl"


class AofRedis:
    """A redis-server that persists every write (AOF, fsync every second, never rewritten) and can be
    stopped and started again on the same port and data.

    It always listens on loopback (where the tests' own clients connect); `bind` adds addresses, for
    example a node's bridge address so that pods reach it. `password` sets `requirepass` (given to
    redis-server on its standard input, never on its command line).
    """

    def __init__(self, workdir: Path, *, bind: tuple[str, ...] = (), password: str | None = None) -> None:
        self.workdir = workdir
        self.bind = tuple(dict.fromkeys(("127.0.0.1", *bind)))
        self.password = password
        self.port = free_port()
        self.process: ManagedProcess | None = None
        self._starts = 0
        self.start()

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed: run `make services`")
        self._starts += 1
        command = [
            executable,
            *([str(self._password_config())] if self.password is not None else []),
            "--port", str(self.port),
            "--bind", *self.bind,
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--aof-use-rdb-preamble", "no",
            "--auto-aof-rewrite-percentage", "0",
        ]  # fmt: skip
        self.process = ManagedProcess("redis", command, self.workdir / f"redis-{self._starts}.log")
        for host in self.bind:
            wait_for_port(self.port, host=host)
        wait_until(self._loaded, 30, message="redis loaded its data")

    def _password_config(self) -> Path:
        """A configuration file (0600) with `requirepass`, so the password is on no command line."""
        assert self.password is not None
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.password):
            raise ValueError("the password must be letters, digits, '-' or '_' (written unquoted into redis.conf)")
        path = self.workdir / "requirepass.conf"
        self.workdir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(f"requirepass {self.password}\n")
        return path

    def _loaded(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits, closing every client connection."""
        if self.process is not None:
            self.process.stop(timeout=30)
            self.process = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=10)

    def commands(self) -> Iterator[list[bytes]]:
        """Every command in the AOF, oldest first."""
        directory = self.workdir / "appendonlydir"
        manifest = (directory / "appendonly.aof.manifest").read_text().split("\n")
        for line in manifest:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "file":
                yield from _resp_commands((directory / parts[1]).read_bytes())

    def fsync(self) -> None:
        """Make sure everything written so far is in the AOF (it is written every second)."""
        time.sleep(1.5)


def _resp_commands(data: bytes) -> Iterator[list[bytes]]:
    position = 0
    while position < len(data):
        end = data.index(b"\r\n", position)
        count = int(data[position + 1 : end])
        position = end + 2
        command = []
        for _ in range(count):
            end = data.index(b"\r\n", position)
            length = int(data[position + 1 : end])
            start = end + 2
            command.append(data[start : start + length])
            position = start + length + 2
        yield command


def ping_message(nonce: str, hold_seconds: float = 0.0) -> Message[None]:
    kwargs: dict[str, object] = {"nonce": nonce}
    if hold_seconds:
        kwargs["hold_seconds"] = hold_seconds
    return Message(queue_name=QUEUE, actor_name="ping", args=(), kwargs=kwargs, options={})


def send_pings(server: AofRedis, count: int, *, hold_seconds: float = 0.0, prefix: str = "n") -> list[str]:
    """Enqueue `count` pings as a producer does (Dramatiq's own enqueue); returns their nonces."""
    producer = RedisBroker(client=server.client(), namespace=NS, middleware=[])
    nonces = [f"{prefix}{index}" for index in range(count)]
    for nonce in nonces:
        producer.enqueue(ping_message(nonce, hold_seconds))
    return nonces


@dataclass
class Tally:
    """What happened to the jobs sent, read from Redis's append-only file."""

    test: str
    sent: int
    processed: int
    lost: int
    duplicated: int
    duplicated_after_retry: int
    retried: int
    seconds: float
    lost_nonces: list[str] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.test}: sent {self.sent}, processed {self.processed}, lost {self.lost}, "
            f"run more than once {self.duplicated} ({self.duplicated_after_retry} after a recorded retry), "
            f"retried {self.retried}, {self.seconds:.1f} s"
            + "".join(f"; {key.replace('_', ' ')} {value}" for key, value in self.notes.items())
        )


def tally(
    test: str, server: AofRedis, nonces: list[str], started: float, *, report: Path = REPORT, **notes: object
) -> Tally:
    server.fsync()
    runs: Counter[str] = Counter()
    retried: set[str] = set()
    for command in server.commands():
        name = command[0].upper()
        if name == b"SET" and command[1].startswith(PROBE_PREFIX):
            runs[command[1][len(PROBE_PREFIX) :].decode()] += 1
        elif name in (b"HSET", b"HSETNX") and command[1].endswith(b".DQ.msgs"):
            try:
                retried.add(json.loads(command[3])["kwargs"]["nonce"])
            except (ValueError, KeyError, TypeError):
                pass
    sent = set(nonces)
    lost = sorted(sent - set(runs))
    duplicated = {nonce for nonce in sent if runs[nonce] > 1}
    result = Tally(
        test=test,
        sent=len(sent),
        processed=len(sent) - len(lost),
        lost=len(lost),
        duplicated=len(duplicated),
        duplicated_after_retry=len(duplicated & retried),
        retried=len(sent & retried),
        seconds=time.monotonic() - started,
        lost_nonces=lost[:20],
        notes=dict(notes),
    )
    report.parent.mkdir(parents=True, exist_ok=True)
    with report.open("a") as out:
        out.write(json.dumps({**asdict(result), "summary": result.line()}) + "\n")
    print(result.line())
    return result


def where_are(server: AofRedis) -> dict[str, int]:
    """Where the messages not yet acked are: for a failure message."""
    client = server.client()
    acks = sum(int(client.scard(key)) for key in client.scan_iter(f"{NS}:__acks__.*"))
    return {
        "ready": int(client.llen(f"{NS}:{QUEUE}")),
        "unacked": int(client.hlen(f"{NS}:{QUEUE}.msgs")),
        "delayed": int(client.hlen(f"{NS}:{QUEUE}.DQ.msgs")),
        "dead": int(client.zcard(f"{NS}:{QUEUE}.XQ")),
        "in_ack_sets": acks,
    }


def drained(server: AofRedis) -> bool:
    """Every message acked (or dead-lettered): nothing ready, in flight or delayed."""
    state = where_are(server)
    return state["unacked"] == 0 and state["delayed"] == 0


def wait_drained(server: AofRedis, timeout: float) -> None:
    wait_until(lambda: drained(server), timeout, interval=0.25, message=f"queue drained ({where_are(server)})")


def probe_count(server: AofRedis) -> int:
    client = server.client()
    return sum(1 for _ in client.scan_iter(match=PROBE_PREFIX + b"*", count=5000))


def start_worker(workdir: Path, server: AofRedis, name: str = "worker", **env: str) -> WorkerProcess:
    settings = {
        "REDIS_URL": server.url,
        "WORKER_QUEUES": QUEUE,
        "WORKER_PROCESSES": "2",
        "WORKER_THREADS": "8",
        "WORKER_SHUTDOWN_TIMEOUT": "20",
        "WORKER_HEARTBEAT_TIMEOUT": "10",
        "WORKER_TELEMETRY_FLUSH_TIMEOUT": "3",
        "OTEL_TRACES_EXPORTER": "none",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    worker = WorkerProcess(workdir, clean_environment(**settings), name=name)
    worker.wait_healthy(timeout=90)
    return worker


def worker_pids(worker: WorkerProcess) -> list[int]:
    return sorted(int(path.name[len("worker-") : -len(".alive")]) for path in worker.metrics_dir.glob("worker-*.alive"))


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
